"""What every handler of a server shares: the broker, the address it advertises, wakeups.

Owns the ``ServerState`` handed to each handler and the wakeup of long-polling
fetches when a produce appended data. Knows no API.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING

from .. import Broker

if TYPE_CHECKING:
    from .groups import Groups
    from .producers import Producers

#: The one broker a server is: its node id in every answer.
NODE_ID = 0


@dataclasses.dataclass
class ServerState:
    """The broker served, how clients should reach it, and the server's own state."""

    broker: Broker
    host: str
    port: int
    cluster_id: str
    groups: Groups
    producers: Producers
    auto_create_topics: bool = False
    #: The SASL mechanisms a connection must authenticate with first; empty: SASL off.
    sasl_mechanisms: tuple[str, ...] = ()
    data_arrived: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    def wake_fetches(self) -> None:
        """Wake every fetch waiting for data; each re-reads and sleeps again if short."""
        self.data_arrived.set()
        self.data_arrived = asyncio.Event()
