/*
 * logstore._speedups: the per-record hot paths of the codec, the partitioner
 * and the consumer, in C.
 *
 * Each exported function is the exact counterpart of a pure-Python twin,
 * which stays and is used when this module is not built or LOGSTORE_PURE=1 is
 * set; logstore/_native.py lists the pairs (PAIRS) and tests/test_native.py
 * checks them on shared inputs:
 *
 *   configure(CorruptLogError, Record)                 the classes to create (_native
 *                                                      passes this module's Record)
 *   encode_section(entries, base_timestamp, start, stop, limit_bytes,
 *                  offset_deltas, now) -> (bytes, index after last, max ts)
 *                                                      recordcodec._py_encode_section
 *   decode_section(data, base_offset, base_timestamp, fixed_timestamp,
 *                  skip_below, record_count, last_offset_delta[, limit])
 *                  -> [Record]                    recordcodec._py_decode_section_flat
 *   check_messages(items, require_keys, Message) -> bool
 *                                                      recordcodec._py_check_messages
 *   route(items, partitions, round_robin_start)
 *        -> (routes, groups, next round robin) or None partitioner._py_route
 *   number(routes, starts) -> [(partition, offset)]    partitioner._py_number
 *   wrap(records, topic, partition, type) -> [type(topic, partition, r)]
 *                                                      consumer._py_wrap
 *   accumulator(batches, batch_records, batch_budget, max_buffered_bytes,
 *               require_key, Message, SendHandle, slow) -> Accumulator
 *                                                      accumulator._PyAccumulator
 *   read_stored(fd, position, available, budget, at_least_one, expected,
 *               end_offset, crc) -> (bytes, next expected, status)
 *                                                      batchfile._py_read_stored
 *
 * and two types, listed in _native.TYPES with their NamedTuple twins (tests/test_message.py):
 *
 *   Message(value, key=None, headers=(), timestamp=None)   model.PyMessage
 *   Record(offset, timestamp, key, value, headers)          model.PyRecord
 *
 * Every length read from the data is checked against the buffer before it is
 * used. The decoder checks in the Python decoder's order, so any problem raises
 * the CorruptLogError class given to configure() with the same `kind`, message
 * and byte position (relative to the records section) as its twin.
 *
 * Record layout (zigzag varints):
 *   length varint | attributes int8 | timestamp_delta varlong | offset_delta varint
 *   key_length varint (-1 null) | key | value_length varint (-1 null) | value
 *   header_count varint | headers (key_length varint, utf-8 key, value_length varint, value)
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stddef.h>
#include "structmember.h"
#include <stdint.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>

static PyObject *CorruptLogError = NULL; /* logstore.errors.CorruptLogError */
static PyTypeObject *RecordType = NULL;   /* logstore.model.Record (a tuple subclass) */
static PyObject *EmptyTuple = NULL;
static PyObject *new_record(PyObject *offset, PyObject *timestamp, PyObject *key,
                            PyObject *value, PyObject *headers);

typedef __int128 i128;

/* ------------------------------------------------------------------ errors */

static PyObject *
corrupt(Py_ssize_t position, const char *kind, const char *format, ...)
{
    if (CorruptLogError == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "logstore._speedups is not configured");
        return NULL;
    }
    va_list vargs;
    va_start(vargs, format);
    PyObject *reason = PyUnicode_FromFormatV(format, vargs);
    va_end(vargs);
    if (reason == NULL)
        return NULL;
    PyObject *args = PyTuple_Pack(1, reason);
    Py_DECREF(reason);
    if (args == NULL)
        return NULL;
    PyObject *kwargs = Py_BuildValue("{s:n,s:s}", "position", position, "kind", kind);
    if (kwargs == NULL) {
        Py_DECREF(args);
        return NULL;
    }
    PyObject *exc = PyObject_Call(CorruptLogError, args, kwargs);
    Py_DECREF(args);
    Py_DECREF(kwargs);
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

/* ------------------------------------------------------------------ varints */

/* Decode a zigzag varint of at most `limit` bytes at data[*pos]; 0 on success. */
static int
read_varint(const unsigned char *data, Py_ssize_t size, Py_ssize_t *pos, int limit, i128 *out)
{
    Py_ssize_t start = *pos, at = *pos;
    unsigned __int128 z = 0;
    int shift = 0;
    for (;;) {
        if (at >= size) {
            corrupt(start, "invalid_records", "varint runs past the end of the data");
            return -1;
        }
        if (at - start >= limit) {
            corrupt(start, "invalid_records", "varint longer than %d bytes", limit);
            return -1;
        }
        unsigned char b = data[at++];
        z |= (unsigned __int128)(b & 0x7F) << shift;
        if (b < 0x80)
            break;
        shift += 7;
    }
    *pos = at;
    *out = (i128)(z >> 1) ^ -(i128)(z & 1);
    return 0;
}

static PyObject *
long_from_i128(i128 v)
{
    if (v >= INT64_MIN && v <= INT64_MAX)
        return PyLong_FromLongLong((long long)v);
    PyObject *hi = PyLong_FromLongLong((long long)(v >> 64));
    PyObject *lo = PyLong_FromUnsignedLongLong((unsigned long long)v);
    PyObject *sixty_four = PyLong_FromLong(64);
    PyObject *result = NULL;
    if (hi && lo && sixty_four) {
        PyObject *shifted = PyNumber_Lshift(hi, sixty_four);
        if (shifted) {
            result = PyNumber_Add(shifted, lo);
            Py_DECREF(shifted);
        }
    }
    Py_XDECREF(hi);
    Py_XDECREF(lo);
    Py_XDECREF(sixty_four);
    return result;
}

static inline int
varint_size(uint64_t z)
{
    int n = 1;
    while (z >= 0x80) {
        z >>= 7;
        n++;
    }
    return n;
}

static inline uint64_t
zigzag(int64_t n)
{
    return ((uint64_t)n << 1) ^ (uint64_t)(n >> 63);
}

static inline unsigned char *
write_varint(unsigned char *out, int64_t n)
{
    uint64_t z = zigzag(n);
    while (z >= 0x80) {
        *out++ = (unsigned char)((z & 0x7F) | 0x80);
        z >>= 7;
    }
    *out++ = (unsigned char)z;
    return out;
}

/* ------------------------------------------------------------------ decoding */

/* The pure decoder (recordcodec._py_decode_section) keeps its loop short by checking
 * bounds late: it indexes the first byte or two of some varints directly, and
 * steps over a key or value without comparing it with the record's end, so a
 * field that overruns is reported at the first bound crossed after it. The
 * functions below check in that same order, so that both decoders name the
 * same damage alike; a field known to overrun its record is stepped over
 * without being built (the record then fails before it can be returned). */

static PyObject *
past_end(Py_ssize_t start)
{
    return corrupt(start, "invalid_records", "record runs past the end of the records section");
}

/* A varint the pure decoder begins by indexing: its first `indexed` bytes (1 or 2)
 * missing is "record runs past the end" at the record's `start`, later ones are
 * read_varint's errors. The one-byte value, by far the most common, is inline. */
static inline int
read_indexed_varint(const unsigned char *data, Py_ssize_t size, Py_ssize_t *pos, int indexed,
                    Py_ssize_t start, i128 *out)
{
    Py_ssize_t at = *pos;
    if (at < size && data[at] < 0x80) {
        int b = data[at];
        *out = (b >> 1) ^ -(b & 1);
        *pos = at + 1;
        return 0;
    }
    if (at >= size || (indexed == 2 && at + 1 >= size)) {
        past_end(start);
        return -1;
    }
    return read_varint(data, size, pos, 5, out);
}

/* The bytes of a key or value of length `n` at data[*pos] (None when n < 0, or
 * when they overrun the record, which then fails), and the position after them:
 * at most 2**34 past the data, where the next read fails. */
static inline PyObject *
read_bytes(const unsigned char *data, Py_ssize_t *pos, i128 n, i128 rec_end)
{
    if (n < 0)
        return Py_NewRef(Py_None);
    Py_ssize_t at = *pos;
    *pos = at + (Py_ssize_t)n;
    if ((i128)at + n > rec_end)
        return Py_NewRef(Py_None);
    return PyBytes_FromStringAndSize((const char *)data + at, (Py_ssize_t)n);
}

static PyObject *
decode_headers(const unsigned char *data, Py_ssize_t size, Py_ssize_t *pos, Py_ssize_t rec_end,
               Py_ssize_t start)
{
    i128 count;
    if (read_varint(data, size, pos, 5, &count) < 0)
        return NULL;
    if (count < 0 || count * 2 > (i128)(rec_end - *pos))
        return corrupt(start, "invalid_records", "header count %lld is invalid for the record",
                       (long long)count);
    PyObject *headers = PyTuple_New((Py_ssize_t)count);
    if (headers == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < (Py_ssize_t)count; i++) {
        i128 n;
        if (read_varint(data, size, pos, 5, &n) < 0)
            goto fail;
        if (n < 0 || (i128)*pos + n > (i128)rec_end) {
            corrupt(start, "invalid_records", "header key length %lld is invalid", (long long)n);
            goto fail;
        }
        PyObject *hkey = PyUnicode_DecodeUTF8((const char *)data + *pos, (Py_ssize_t)n, "strict");
        if (hkey == NULL) {
            if (PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
                PyErr_Clear();
                corrupt(start, "invalid_records", "header key is not UTF-8");
            }
            goto fail;
        }
        *pos += (Py_ssize_t)n;
        if (read_varint(data, size, pos, 5, &n) < 0) {
            Py_DECREF(hkey);
            goto fail;
        }
        PyObject *hval = read_bytes(data, pos, n, (i128)rec_end);
        if (hval == NULL) {
            Py_DECREF(hkey);
            goto fail;
        }
        PyObject *pair = PyTuple_Pack(2, hkey, hval);
        Py_DECREF(hkey);
        Py_DECREF(hval);
        if (pair == NULL)
            goto fail;
        PyObject_GC_UnTrack(pair); /* str and bytes only: no cycle possible */
        PyTuple_SET_ITEM(headers, i, pair);
    }
    PyObject_GC_UnTrack(headers);
    return headers;
fail:
    Py_DECREF(headers);
    return NULL;
}

static PyObject *
decode_section(PyObject *self, PyObject *args)
{
    Py_buffer view;
    long long base_offset, base_timestamp, skip_below, last_offset_delta;
    PyObject *fixed_timestamp;
    Py_ssize_t count, limit = -1;
    int build = 1;
    if (!PyArg_ParseTuple(args, "y*LLOLnL|np", &view, &base_offset, &base_timestamp,
                          &fixed_timestamp, &skip_below, &count, &last_offset_delta, &limit,
                          &build))
        return NULL;
    /* build false: every record checked as when built, none built; the answer is the
     * number of records without a key (what a compacted log refuses). */
    Py_ssize_t null_keys = 0;
    if (RecordType == NULL) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_RuntimeError, "logstore._speedups is not configured");
        return NULL;
    }
    const unsigned char *data = view.buf;
    Py_ssize_t size = view.len;
    PyObject *out = NULL;
    PyObject *last_ts = NULL; /* the last timestamp built, for the next record with the same */
    i128 last_ts_delta = 0;
    if ((i128)count * 7 > (i128)size) {
        corrupt(0, "invalid_records", "record count %zd cannot fit in %zd bytes", count, size);
        goto done;
    }
    out = PyList_New(0);
    if (out == NULL)
        goto done;
    Py_ssize_t pos = 0, start = 0;
    i128 prev_delta = -1;
    for (Py_ssize_t i = 0; i < count; i++) {
        start = pos;
        i128 length, ts_delta, delta, n;
        if (read_indexed_varint(data, size, &pos, 2, start, &length) < 0)
            goto fail;
        i128 rec_end = (i128)pos + length;
        if (length < 6 || rec_end > (i128)size) {
            corrupt(start, "invalid_records", "record length %lld is invalid or overruns the data",
                    (long long)length);
            goto fail;
        }
        pos += 1; /* attributes: unused */
        if (read_varint(data, size, &pos, 10, &ts_delta) < 0)
            goto fail;
        if (read_indexed_varint(data, size, &pos, 2, start, &delta) < 0)
            goto fail;
        if (delta <= prev_delta) {
            corrupt(start, "invalid_records", "offset delta %lld does not follow %lld",
                    (long long)delta, (long long)prev_delta);
            goto fail;
        }
        prev_delta = delta;
        if (delta < (i128)skip_below) {
            pos = (Py_ssize_t)rec_end;
            continue;
        }
        PyObject *key, *value, *headers;
        if (read_indexed_varint(data, size, &pos, 1, start, &n) < 0)
            goto fail;
        if (!build) {
            /* The same positions and checks as below, without objects. */
            if (n < 0)
                null_keys++;
            else
                pos += (Py_ssize_t)n;
            if (read_indexed_varint(data, size, &pos, 2, start, &n) < 0)
                goto fail;
            if (n >= 0)
                pos += (Py_ssize_t)n;
            if (pos >= size) {
                past_end(start);
                goto fail;
            }
            if (data[pos] == 0)
                pos += 1;
            else {
                headers = decode_headers(data, size, &pos, (Py_ssize_t)rec_end, start);
                if (headers == NULL)
                    goto fail;
                Py_DECREF(headers);
            }
            if ((i128)pos != rec_end) {
                corrupt(start, "invalid_records",
                        "record fields end at byte %zd, its length says %lld", pos,
                        (long long)rec_end);
                goto fail;
            }
            continue;
        }
        key = read_bytes(data, &pos, n, rec_end);
        if (key == NULL)
            goto fail;
        if (read_indexed_varint(data, size, &pos, 2, start, &n) < 0) {
            Py_DECREF(key);
            goto fail;
        }
        value = read_bytes(data, &pos, n, rec_end);
        if (value == NULL) {
            Py_DECREF(key);
            goto fail;
        }
        if (pos >= size) {
            Py_DECREF(key);
            Py_DECREF(value);
            past_end(start);
            goto fail;
        }
        if (data[pos] == 0) {
            headers = Py_NewRef(EmptyTuple);
            pos += 1;
        }
        else {
            headers = decode_headers(data, size, &pos, (Py_ssize_t)rec_end, start);
            if (headers == NULL) {
                Py_DECREF(key);
                Py_DECREF(value);
                goto fail;
            }
        }
        if ((i128)pos != rec_end) {
            Py_DECREF(key);
            Py_DECREF(value);
            Py_DECREF(headers);
            corrupt(start, "invalid_records", "record fields end at byte %zd, its length says %lld",
                    pos, (long long)rec_end);
            goto fail;
        }
        PyObject *offset = long_from_i128((i128)base_offset + delta);
        PyObject *timestamp;
        if (fixed_timestamp != Py_None)
            timestamp = Py_NewRef(fixed_timestamp);
        else if (last_ts != NULL && ts_delta == last_ts_delta)
            timestamp = Py_NewRef(last_ts); /* records of a batch often share one time */
        else {
            timestamp = long_from_i128((i128)base_timestamp + ts_delta);
            if (timestamp != NULL) {
                Py_XSETREF(last_ts, Py_NewRef(timestamp));
                last_ts_delta = ts_delta;
            }
        }
        if (offset == NULL || timestamp == NULL) {
            Py_XDECREF(offset);
            Py_XDECREF(timestamp);
            Py_DECREF(key);
            Py_DECREF(value);
            Py_DECREF(headers);
            goto fail;
        }
        PyObject *record = new_record(offset, timestamp, key, value, headers);
        if (record == NULL)
            goto fail;
        int appended = PyList_Append(out, record);
        Py_DECREF(record);
        if (appended < 0)
            goto fail;
        if (PyList_GET_SIZE(out) == limit)
            goto done; /* the caller wants no more: the rest is neither built nor checked */
    }
    if (pos != size) {
        corrupt(pos, "invalid_records", "%zd bytes left over after %zd records", size - pos, count);
        goto fail;
    }
    if (prev_delta > (i128)last_offset_delta) {
        corrupt(0, "invalid_records",
                "offset delta %lld exceeds the batch's last offset delta %lld",
                (long long)prev_delta, last_offset_delta);
        goto fail;
    }
    if (!build)
        Py_SETREF(out, PyLong_FromSsize_t(null_keys));
    goto done;
fail:
    Py_CLEAR(out);
done:
    Py_XDECREF(last_ts);
    PyBuffer_Release(&view);
    return out;
}

/* ------------------------------------------------------------------ encoding */

typedef struct {
    PyObject *value, *key, *headers; /* borrowed */
    int64_t timestamp;
} Entry;

static int
check_value_and_key(Entry *e)
{
    if (e->value != Py_None && !PyBytes_Check(e->value)) {
        PyErr_Format(PyExc_TypeError, "value must be bytes or None, not %.100s", Py_TYPE(e->value)->tp_name);
        return -1;
    }
    if (e->key != Py_None && !PyBytes_Check(e->key)) {
        PyErr_Format(PyExc_TypeError, "key must be bytes or None, not %.100s", Py_TYPE(e->key)->tp_name);
        return -1;
    }
    return 0;
}

/* Validate one entry (value, key, headers, ts), a (value, key) pair or a bare bytes
 * value, into `e`. */
static int
load_entry(PyObject *item, int64_t now, Entry *e)
{
    if (PyBytes_CheckExact(item)) { /* append_many's plain values: no key, no headers, now */
        e->value = item;
        e->key = Py_None;
        e->headers = Py_None;
        e->timestamp = now;
        return 0;
    }
    if (PyTuple_CheckExact(item) && PyTuple_GET_SIZE(item) == 2) {
        /* append_many's (value, key) pairs: no headers, now */
        e->value = PyTuple_GET_ITEM(item, 0);
        e->key = PyTuple_GET_ITEM(item, 1);
        e->headers = Py_None;
        e->timestamp = now;
        return check_value_and_key(e);
    }
    /* Only tuples and lists: their items stay owned by `item` (borrowed here), and
     * reading them runs no Python code, so both passes see the same entries. */
    if (!(PyTuple_Check(item) || PyList_Check(item)) || PySequence_Fast_GET_SIZE(item) != 4) {
        PyErr_SetString(PyExc_TypeError,
                        "each entry must be a (value, key, headers, timestamp) tuple or list");
        return -1;
    }
    PyObject **f = PySequence_Fast_ITEMS(item);
    e->value = f[0];
    e->key = f[1];
    e->headers = f[2];
    PyObject *ts = f[3];
    if (check_value_and_key(e) < 0)
        return -1;
    if (e->headers != Py_None && !PyTuple_Check(e->headers) && !PyList_Check(e->headers)) {
        PyErr_SetString(PyExc_TypeError, "headers must be a tuple or list of (str, bytes | None) pairs");
        return -1;
    }
    if (ts == Py_None) {
        e->timestamp = now;
    }
    else if (PyLong_Check(ts)) {
        e->timestamp = PyLong_AsLongLong(ts); /* an int: no Python code runs */
        if (e->timestamp == -1 && PyErr_Occurred())
            return -1;
    }
    else {
        PyErr_Format(PyExc_TypeError, "timestamp must be an int or None, not %.100s", Py_TYPE(ts)->tp_name);
        return -1;
    }
    return 0;
}

/* Bytes the headers take (count varint included); -1 on error. */
static Py_ssize_t
headers_size(PyObject *headers, unsigned char *out)
{
    PyObject *fast = Py_NewRef(headers); /* a tuple or list: load_entry checked */
    Py_ssize_t count = PySequence_Fast_GET_SIZE(fast);
    Py_ssize_t total = varint_size(zigzag(count));
    if (out)
        out = write_varint(out, count);
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(fast, i);
        if (!PyTuple_Check(pair) && !PyList_Check(pair)) {
            PyErr_SetString(PyExc_TypeError, "each header must be a (str, bytes | None) pair");
            goto fail;
        }
        if (PySequence_Fast_GET_SIZE(pair) != 2) {
            PyErr_SetString(PyExc_TypeError, "each header must be a (str, bytes | None) pair");
            goto fail;
        }
        PyObject *hkey = PySequence_Fast_GET_ITEM(pair, 0);
        PyObject *hval = PySequence_Fast_GET_ITEM(pair, 1);
        if (!PyUnicode_Check(hkey)) {
            PyErr_SetString(PyExc_TypeError, "a header key must be a str");
            goto fail;
        }
        Py_ssize_t klen;
        const char *kbuf = PyUnicode_AsUTF8AndSize(hkey, &klen);
        if (kbuf == NULL)
            goto fail;
        total += varint_size(zigzag(klen)) + klen;
        if (out) {
            out = write_varint(out, klen);
            memcpy(out, kbuf, klen);
            out += klen;
        }
        if (hval == Py_None) {
            total += 1;
            if (out)
                *out++ = 0x01;
        }
        else if (PyBytes_Check(hval)) {
            Py_ssize_t vlen = PyBytes_GET_SIZE(hval);
            total += varint_size(zigzag(vlen)) + vlen;
            if (out) {
                out = write_varint(out, vlen);
                memcpy(out, PyBytes_AS_STRING(hval), vlen);
                out += vlen;
            }
        }
        else {
            PyErr_SetString(PyExc_TypeError, "a header value must be bytes or None");
            goto fail;
        }
    }
    Py_DECREF(fast);
    return total;
fail:
    Py_DECREF(fast);
    return -1;
}

static int
offset_delta_at(PyObject *deltas, Py_ssize_t i, int64_t fallback, int64_t *out)
{
    if (deltas == Py_None) {
        *out = fallback;
        return 0;
    }
    if (i >= PySequence_Fast_GET_SIZE(deltas)) {
        PyErr_SetString(PyExc_IndexError, "fewer offset deltas than entries");
        return -1;
    }
    PyObject *item = PySequence_Fast_GET_ITEM(deltas, i);
    if (!PyLong_Check(item)) {
        PyErr_SetString(PyExc_TypeError, "offset deltas must be ints");
        return -1;
    }
    *out = PyLong_AsLongLong(item);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

static PyObject *
encode_section(PyObject *self, PyObject *args)
{
    PyObject *entries, *stop_obj, *limit_obj, *deltas;
    long long base_timestamp, now;
    Py_ssize_t start;
    if (!PyArg_ParseTuple(args, "OLnOOOL", &entries, &base_timestamp, &start, &stop_obj, &limit_obj,
                          &deltas, &now))
        return NULL;
    PyObject *fast = PySequence_Fast(entries, "entries must be a sequence");
    if (fast == NULL)
        return NULL;
    if (deltas != Py_None) {
        deltas = PySequence_Fast(deltas, "offset deltas must be a sequence");
        if (deltas == NULL) {
            Py_DECREF(fast);
            return NULL;
        }
    }
    else {
        Py_INCREF(deltas);
    }
    Py_ssize_t n_entries = PySequence_Fast_GET_SIZE(fast);
    Py_ssize_t stop = n_entries;
    if (stop_obj != Py_None) {
        stop = PyLong_AsSsize_t(stop_obj);
        if (stop == -1 && PyErr_Occurred())
            goto fail_fast;
        if (stop > n_entries)
            stop = n_entries;
    }
    long long limit = (long long)1 << 62;
    if (limit_obj != Py_None) {
        limit = PyLong_AsLongLong(limit_obj);
        if (limit == -1 && PyErr_Occurred())
            goto fail_fast;
    }
    if (start < 0)
        start = 0;
    Py_ssize_t span = stop > start ? stop - start : 0;
    Py_ssize_t *bodies = PyMem_Malloc(sizeof(Py_ssize_t) * (span ? span : 1));
    if (bodies == NULL) {
        PyErr_NoMemory();
        goto fail_fast;
    }
    /* Pass 1: validate, size every record, stop at the byte limit. */
    long long total = 0, max_ts = -2;
    Py_ssize_t count = 0;
    PyObject **items = PySequence_Fast_ITEMS(fast);
    for (Py_ssize_t i = start; i < stop; i++) {
        Entry e;
        if (load_entry(items[i], now, &e) < 0)
            goto fail_bodies;
        int64_t delta;
        if (offset_delta_at(deltas, count, count, &delta) < 0)
            goto fail_bodies;
        Py_ssize_t body = 1 + varint_size(zigzag(e.timestamp - base_timestamp)) + varint_size(zigzag(delta));
        if (e.key == Py_None)
            body += 1;
        else
            body += varint_size(zigzag(PyBytes_GET_SIZE(e.key))) + PyBytes_GET_SIZE(e.key);
        if (e.value == Py_None)
            body += 1;
        else
            body += varint_size(zigzag(PyBytes_GET_SIZE(e.value))) + PyBytes_GET_SIZE(e.value);
        if (e.headers == Py_None || PyObject_Not(e.headers) == 1) {
            body += 1;
        }
        else {
            Py_ssize_t hs = headers_size(e.headers, NULL);
            if (hs < 0)
                goto fail_bodies;
            body += hs;
        }
        total += body + 3;
        if (total > limit && count)
            break;
        if (e.timestamp > max_ts)
            max_ts = e.timestamp;
        bodies[count++] = body;
    }
    /* Pass 2: write. */
    Py_ssize_t out_size = 0;
    for (Py_ssize_t i = 0; i < count; i++)
        out_size += varint_size(zigzag(bodies[i])) + bodies[i];
    PyObject *result = PyBytes_FromStringAndSize(NULL, out_size);
    if (result == NULL)
        goto fail_bodies;
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    for (Py_ssize_t i = 0; i < count; i++) {
        Entry e;
        if (load_entry(items[start + i], now, &e) < 0)
            goto fail_result;
        int64_t delta;
        if (offset_delta_at(deltas, i, i, &delta) < 0)
            goto fail_result;
        out = write_varint(out, bodies[i]);
        *out++ = 0; /* attributes */
        out = write_varint(out, e.timestamp - base_timestamp);
        out = write_varint(out, delta);
        if (e.key == Py_None) {
            *out++ = 0x01;
        }
        else {
            Py_ssize_t len = PyBytes_GET_SIZE(e.key);
            out = write_varint(out, len);
            memcpy(out, PyBytes_AS_STRING(e.key), len);
            out += len;
        }
        if (e.value == Py_None) {
            *out++ = 0x01;
        }
        else {
            Py_ssize_t len = PyBytes_GET_SIZE(e.value);
            out = write_varint(out, len);
            memcpy(out, PyBytes_AS_STRING(e.value), len);
            out += len;
        }
        if (e.headers == Py_None || PyObject_Not(e.headers) == 1) {
            *out++ = 0x00;
        }
        else {
            Py_ssize_t hs = headers_size(e.headers, out);
            if (hs < 0)
                goto fail_result;
            out += hs;
        }
    }
    if (out != (unsigned char *)PyBytes_AS_STRING(result) + out_size) {
        PyErr_SetString(PyExc_SystemError, "encode_section: the two passes disagree on sizes");
        goto fail_result;
    }
    PyMem_Free(bodies);
    Py_DECREF(fast);
    Py_DECREF(deltas);
    PyObject *ret = Py_BuildValue("(NnL)", result, start + count, max_ts);
    return ret;
fail_result:
    Py_DECREF(result);
fail_bodies:
    PyMem_Free(bodies);
fail_fast:
    Py_DECREF(fast);
    Py_DECREF(deltas);
    return NULL;
}

/* check_messages(items, require_keys, message_type) -> bool
 *
 * True when every item is a bytes value (only if keys are not required), a plain
 * (value, key) 2-tuple of bytes (or None), or a `message_type` whose value and key are
 * bytes (or None), with no headers and a timestamp that is None or an int in 0..2**62:
 * then encode_section can take the list as it is. False sends the caller to its full (Python) validation, which
 * also produces the error messages. */
static PyObject *
check_messages(PyObject *self, PyObject *args)
{
    PyObject *items, *message_type;
    int require_keys;
    if (!PyArg_ParseTuple(args, "O!pO", &PyList_Type, &items, &require_keys, &message_type))
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(items);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *m = PyList_GET_ITEM(items, i);
        if (PyBytes_CheckExact(m)) {
            if (require_keys)
                Py_RETURN_FALSE;
            continue;
        }
        if (PyTuple_CheckExact(m) && PyTuple_GET_SIZE(m) == 2) { /* a (value, key) pair */
            PyObject *value = PyTuple_GET_ITEM(m, 0), *key = PyTuple_GET_ITEM(m, 1);
            if (value != Py_None && !PyBytes_CheckExact(value))
                Py_RETURN_FALSE;
            if (key == Py_None ? require_keys : !PyBytes_CheckExact(key))
                Py_RETURN_FALSE;
            continue;
        }
        if ((PyObject *)Py_TYPE(m) != message_type || PyTuple_GET_SIZE(m) != 4)
            Py_RETURN_FALSE;
        PyObject *value = PyTuple_GET_ITEM(m, 0), *key = PyTuple_GET_ITEM(m, 1);
        PyObject *headers = PyTuple_GET_ITEM(m, 2), *ts = PyTuple_GET_ITEM(m, 3);
        if (value != Py_None && !PyBytes_CheckExact(value))
            Py_RETURN_FALSE;
        if (key == Py_None ? require_keys : !PyBytes_CheckExact(key))
            Py_RETURN_FALSE;
        if (!(PyTuple_CheckExact(headers) && PyTuple_GET_SIZE(headers) == 0))
            Py_RETURN_FALSE;
        if (ts != Py_None) {
            if (!PyLong_CheckExact(ts))
                Py_RETURN_FALSE;
            int overflow;
            long long v = PyLong_AsLongLongAndOverflow(ts, &overflow);
            if (overflow || v < 0 || v > ((long long)1 << 62))
                Py_RETURN_FALSE;
        }
    }
    Py_RETURN_TRUE;
}

/* ------------------------------------------------------------------ routing */

/* Kafka's murmur2 (Utils.murmur2) of a key, as the unsigned 32-bit pattern. */
static uint32_t
murmur2(const unsigned char *data, Py_ssize_t length)
{
    const uint32_t m = 0x5bd1e995;
    uint32_t h = 0x9747b28c ^ (uint32_t)length;
    Py_ssize_t whole = length - length % 4;
    for (Py_ssize_t i = 0; i < whole; i += 4) {
        uint32_t k = (uint32_t)data[i] | ((uint32_t)data[i + 1] << 8) |
                     ((uint32_t)data[i + 2] << 16) | ((uint32_t)data[i + 3] << 24);
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
    }
    switch (length % 4) {
    case 3:
        h ^= (uint32_t)data[whole + 2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t)data[whole + 1] << 8;
        /* fall through */
    case 1:
        h ^= (uint32_t)data[whole];
        h *= m;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

/* route(items, partitions, round_robin_start) -> (routes, groups, next round robin) or None
 *
 * Kafka's default partitioner for a list of bytes values (no key: round-robin
 * from round_robin_start), Messages and (value, key) pairs of bytes (or None): routes[i] is item i's
 * partition, groups[p] the items of partition p in order. None when an item is
 * something else: the caller routes in Python. */
static PyObject *
route(PyObject *self, PyObject *args)
{
    PyObject *given;
    Py_ssize_t partitions, next_rr;
    if (!PyArg_ParseTuple(args, "O!nn", &PyList_Type, &given, &partitions, &next_rr))
        return NULL;
    if (partitions < 1) {
        PyErr_SetString(PyExc_ValueError, "partitions must be positive");
        return NULL;
    }
    /* A private copy: the allocations between the two passes can run finalizers,
     * which must not be able to change what was routed. */
    PyObject *items = PyList_GetSlice(given, 0, PyList_GET_SIZE(given));
    if (items == NULL)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(items);
    /* Pass 1: the partition of every item, and how many each partition gets.
     * Pass 2: lists of exactly that size, filled in order (no regrowth). */
    Py_ssize_t *sizes = PyMem_Calloc((size_t)partitions, sizeof(Py_ssize_t));
    Py_ssize_t *chosen = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)(n ? n : 1));
    PyObject *routes = NULL, *groups = NULL, *result = NULL;
    if (sizes == NULL || chosen == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *m = PyList_GET_ITEM(items, i);
        PyObject *key = Py_None;
        if (!PyBytes_CheckExact(m)) {
            if (!PyTuple_Check(m))
                goto other;
            if (PyTuple_CheckExact(m) && PyTuple_GET_SIZE(m) == 2) {
                /* a (value, key) pair: one of another value is refused by its index in Python */
                PyObject *value = PyTuple_GET_ITEM(m, 0);
                if (value != Py_None && !PyBytes_CheckExact(value))
                    goto other;
            }
            else if (PyTuple_GET_SIZE(m) != 4)
                goto other; /* a Message (or a 4-tuple) */
            key = PyTuple_GET_ITEM(m, 1);
        }
        Py_ssize_t p;
        if (key == Py_None)
            p = next_rr++ % partitions;
        else if (PyBytes_CheckExact(key))
            p = (Py_ssize_t)((murmur2((const unsigned char *)PyBytes_AS_STRING(key),
                                      PyBytes_GET_SIZE(key)) & 0x7fffffff) %
                             (uint32_t)partitions);
        else
            goto other;
        chosen[i] = p;
        sizes[p]++;
    }
    routes = PyList_New(n);
    groups = PyList_New(partitions);
    if (routes == NULL || groups == NULL)
        goto done;
    for (Py_ssize_t p = 0; p < partitions; p++) {
        PyObject *group = PyList_New(sizes[p]);
        if (group == NULL)
            goto done;
        PyList_SET_ITEM(groups, p, group);
        sizes[p] = 0; /* from here on: how many are filled */
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t p = chosen[i];
        PyObject *index = PyLong_FromSsize_t(p);
        if (index == NULL)
            goto done;
        PyList_SET_ITEM(routes, i, index);
        PyObject *m = PyList_GET_ITEM(items, i);
        PyList_SET_ITEM(PyList_GET_ITEM(groups, p), sizes[p]++, Py_NewRef(m));
    }
    result = Py_BuildValue("(NNn)", routes, groups, next_rr);
    routes = groups = NULL; /* "N" took them */
    goto done;
other:
    result = Py_NewRef(Py_None);
done: /* with result NULL: an error is set */
    PyMem_Free(sizes);
    PyMem_Free(chosen);
    Py_DECREF(items);
    Py_XDECREF(routes);
    Py_XDECREF(groups);
    return result;
}

/* number(routes, starts) -> [(partition, offset)]: item i gets the next offset of its
 * partition, counting from starts[partition]. */
static PyObject *
number(PyObject *self, PyObject *args)
{
    PyObject *routes, *starts;
    if (!PyArg_ParseTuple(args, "O!O!", &PyList_Type, &routes, &PyList_Type, &starts))
        return NULL;
    Py_ssize_t partitions = PyList_GET_SIZE(starts);
    long long *next = PyMem_Malloc(sizeof(long long) * (partitions ? partitions : 1));
    if (next == NULL)
        return PyErr_NoMemory();
    PyObject *out = NULL;
    for (Py_ssize_t p = 0; p < partitions; p++) {
        PyObject *start = PyList_GET_ITEM(starts, p);
        if (!PyLong_CheckExact(start)) { /* no __index__: no Python code in this loop */
            PyErr_SetString(PyExc_TypeError, "starts must be ints");
            goto fail;
        }
        next[p] = PyLong_AsLongLong(start);
        if (next[p] == -1 && PyErr_Occurred())
            goto fail;
    }
    Py_ssize_t n = PyList_GET_SIZE(routes);
    out = PyList_New(n);
    if (out == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (PyList_GET_SIZE(routes) != n) { /* a finalizer run by an allocation changed it */
            PyErr_SetString(PyExc_RuntimeError, "the routes changed while they were numbered");
            goto fail;
        }
        /* Our own reference: the allocations below can run finalizers that
         * replace the list's items. */
        PyObject *route = Py_NewRef(PyList_GET_ITEM(routes, i));
        Py_ssize_t p = PyLong_CheckExact(route) ? PyLong_AsSsize_t(route) : -1;
        PyObject *offset = NULL, *pair = NULL;
        if ((p == -1 && PyErr_Occurred()) || p < 0 || p >= partitions) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_IndexError, "route outside the partitions");
        }
        else {
            offset = PyLong_FromLongLong(next[p]++);
            pair = offset == NULL ? NULL : PyTuple_New(2);
        }
        if (pair == NULL) {
            Py_XDECREF(offset);
            Py_DECREF(route);
            goto fail;
        }
        PyTuple_SET_ITEM(pair, 0, route); /* our reference moves into the tuple */
        PyTuple_SET_ITEM(pair, 1, offset);
        PyObject_GC_UnTrack(pair); /* two ints: no cycle, nothing for the collector */
        PyList_SET_ITEM(out, i, pair);
    }
    PyMem_Free(next);
    return out;
fail:
    PyMem_Free(next);
    Py_XDECREF(out);
    return NULL;
}

/* wrap(records, topic, partition, ConsumedRecord) -> [ConsumedRecord(topic, partition, r)]
 * Untracked by the cycle collector, like the records themselves. */
static PyObject *
wrap(PyObject *self, PyObject *args)
{
    PyObject *records, *topic, *partition;
    PyTypeObject *type;
    if (!PyArg_ParseTuple(args, "O!OOO!", &PyList_Type, &records, &topic, &partition, &PyType_Type,
                          &type))
        return NULL;
    if (!PyType_IsSubtype(type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "the wrapper type must be a tuple subclass");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(records);
    PyObject *out = PyList_New(n);
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = type->tp_alloc(type, 3);
        if (item == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        if (PyList_GET_SIZE(records) != n) { /* a finalizer run by the allocation changed it */
            Py_DECREF(item);
            Py_DECREF(out);
            PyErr_SetString(PyExc_RuntimeError, "the records changed while they were wrapped");
            return NULL;
        }
        PyTuple_SET_ITEM(item, 0, Py_NewRef(topic));
        PyTuple_SET_ITEM(item, 1, Py_NewRef(partition));
        PyTuple_SET_ITEM(item, 2, Py_NewRef(PyList_GET_ITEM(records, i)));
        if (PyUnicode_CheckExact(topic) && PyLong_CheckExact(partition))
            PyObject_GC_UnTrack(item); /* str, int and an untracked record: no cycle */
        PyList_SET_ITEM(out, i, item);
    }
    return out;
}

/* ------------------------------------------------------------------ stored batches */

#define STORED_MAX_HOPS 64

static int32_t
be32(const unsigned char *u)
{
    return (int32_t)(((uint32_t)u[0] << 24) | ((uint32_t)u[1] << 16) | ((uint32_t)u[2] << 8) |
                     (uint32_t)u[3]);
}

/* pread all of size bytes at position (fewer only at the end of the file); -1 with an error set. */
static Py_ssize_t
pread_all(int fd, char *buf, Py_ssize_t size, long long position)
{
    Py_ssize_t got = 0;
    while (got < size) {
        ssize_t n;
        Py_BEGIN_ALLOW_THREADS
        n = pread(fd, buf + got, (size_t)(size - got), (off_t)(position + got));
        Py_END_ALLOW_THREADS
        if (n < 0) {
            if (errno == EINTR) {
                if (PyErr_CheckSignals() < 0)
                    return -1;
                continue;
            }
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (n == 0)
            break;
        got += n;
    }
    return got;
}

/*
 * read_stored(fd, position, available, budget, at_least_one, expected, end_offset, crc)
 *     -> (bytes, next expected base offset, status)
 *
 * Log.read_batches' one copy. The batches from `position` that fit in
 * `budget` bytes (the first whatever its size with `at_least_one`), within
 * the `available` bytes the snapshot holds there, are found first by their
 * 12-byte length prefixes (at most STORED_MAX_HOPS small preads), so the
 * bytes object is allocated at its final size and filled by one pread: a
 * fresh object shrunk afterwards would give its pages back to the system
 * (glibc's mmap threshold) and fault them in again on the next call, which
 * costs more than the copy. Past the hops (small batches) the rest is read to
 * the budget and the object shrunk in place (_PyBytes_Resize).
 *
 * Every batch kept is checked: a sane v2 batch (length, magic 2, counts),
 * base offset exactly `expected` (a log never compacted), last offset below
 * `end_offset`, and with `crc` (crc32c.crc32c) its CRC-32C. status 0: all
 * `available` bytes served; 1: the budget ended the batches; 2: anything
 * else (damage, a torn batch, a file shorter than the snapshot): the caller
 * walks again with the checking code, which says what is wrong.
 * batchfile._py_read_stored is its twin.
 */
static PyObject *
read_stored(PyObject *self, PyObject *args)
{
    int fd, at_least_one;
    long long position, available, budget, expected, end_offset;
    PyObject *crc;
    if (!PyArg_ParseTuple(args, "iLLLpLLO", &fd, &position, &available, &budget, &at_least_one,
                          &expected, &end_offset, &crc))
        return NULL;
    if (position < 0 || available < 0 || available > PY_SSIZE_T_MAX) {
        PyErr_SetString(PyExc_ValueError, "negative position or size");
        return NULL;
    }
    /* 1. Where the batches end, from their length prefixes. */
    long long span = 0, size = -1;
    unsigned char prefix[12];
    for (int hops = 0; hops < STORED_MAX_HOPS && span < available; hops++) {
        Py_ssize_t n = pread_all(fd, (char *)prefix, 12, position + span);
        if (n < 0)
            return NULL;
        if (n < 12)
            break;
        int32_t length = be32(prefix + 8);
        long long whole = 12 + (long long)length;
        if (length < 49 || whole > available - span)
            break; /* judged by the walk */
        if (span + whole > budget && !(span == 0 && at_least_one)) {
            size = span; /* the next batch does not fit: the end is known */
            break;
        }
        span += whole;
    }
    int exact = size >= 0;
    if (size < 0)
        size = span == available ? span : (budget > span ? (budget < available ? budget : available) : span);
    /* 2. One pread into the bytes returned. */
    PyObject *data = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)size);
    if (data == NULL)
        return NULL;
    char *buf = PyBytes_AS_STRING(data);
    Py_ssize_t got = pread_all(fd, buf, (Py_ssize_t)size, position);
    if (got < 0) {
        Py_DECREF(data);
        return NULL;
    }
    /* 3. Every batch checked, up to the first that is not wholly there. */
    const unsigned char *u = (const unsigned char *)buf;
    Py_ssize_t pos = 0;
    int status = 2;
    for (;;) {
        Py_ssize_t left = got - pos;
        if (pos == available) {
            status = 0;
            break;
        }
        if (left < 12) {
            /* Not a whole prefix read: the budget's end, unless the read stopped short. */
            if (got == size && size < available && (exact || size >= budget) &&
                (pos > 0 || !at_least_one))
                status = 1;
            break;
        }
        int32_t length = be32(u + pos + 8);
        long long whole = 12 + (long long)length;
        if (length < 49 || whole > available - pos)
            break;
        if (whole > left || left < 61) {
            if (got == size && pos + whole > budget && (pos > 0 || !at_least_one))
                status = 1;
            break;
        }
        if (u[pos + 16] != 2)
            break;
        uint64_t raw = 0;
        for (int i = 0; i < 8; i++)
            raw = (raw << 8) | u[pos + i];
        long long base = (long long)raw;
        uint32_t stored = (uint32_t)be32(u + pos + 17);
        int32_t delta = be32(u + pos + 23);
        int32_t count = be32(u + pos + 57);
        if (delta < 0 || count < 0 || base != expected || base < 0 ||
            base > end_offset - 1 - (long long)delta)
            break;
        if (crc != Py_None) {
            PyObject *view = PyMemoryView_FromMemory(buf + pos + 21, (Py_ssize_t)whole - 21,
                                                     PyBUF_READ);
            if (view == NULL)
                goto fail;
            PyObject *value = PyObject_CallOneArg(crc, view);
            Py_DECREF(view);
            if (value == NULL)
                goto fail;
            unsigned long actual = PyLong_AsUnsignedLong(value);
            Py_DECREF(value);
            if (actual == (unsigned long)-1 && PyErr_Occurred())
                goto fail;
            if (actual != stored)
                break;
        }
        expected = base + delta + 1;
        pos += (Py_ssize_t)whole;
    }
    if (pos < (Py_ssize_t)size && _PyBytes_Resize(&data, pos) < 0)
        return NULL; /* data was freed */
    return Py_BuildValue("(NLi)", data, expected, status);
fail:
    Py_DECREF(data);
    return NULL;
}

/* ------------------------------------------------------------------ Message and Record */

/* logstore.model's Message and Record when this module is loaded: tuple subclasses with
 * the fields, defaults, errors, repr and helpers of their NamedTuple twins (which stay in
 * logstore/model.py for the pure codec). Two things make them cheap:
 *
 * - construction through tp_vectorcall (a call `Message(v, key=k)` reaches it directly,
 *   with no argument tuple or dict) and a parse that compares keyword names by identity
 *   first (the compiler interns them);
 * - fields as read-only members at the item offsets, so CPython 3.11 specializes
 *   `r.key` to a slot load (LOAD_ATTR_SLOT); the NamedTuple's `_tuplegetter` descriptor
 *   is looked up generically on every access.
 *
 * An instance whose items cannot be part of a cycle (bytes, None, ints, untracked tuples)
 * is left untracked by the cycle collector, as CPython untracks such tuples itself. */

#define FIELDS_MAX 5

typedef struct {
    PyTypeObject *type;
    const char *name;
    Py_ssize_t n_fields, n_required;
    const char *field_names[FIELDS_MAX];
    PyObject *names[FIELDS_MAX];    /* interned */
    PyObject *defaults[FIELDS_MAX]; /* for fields from n_required on */
    PyObject *fields;               /* _fields */
    PyObject *free_head;            /* freed instances of the exact type, through ob_item[0] */
    Py_ssize_t free_count;
} FieldSpec;

/* Freed instances kept for reuse, per type: a scan frees a batch's records as the next
 * batch's are built, a user's loop frees a call's Messages as it builds the next. */
#define FREE_MAX 2048

static PyTypeObject MessageType;
static PyTypeObject RecordCType;

static FieldSpec MessageSpec = {
    &MessageType, "Message", 4, 1, {"value", "key", "headers", "timestamp"},
};
static FieldSpec RecordSpec = {
    &RecordCType, "Record", 5, 5, {"offset", "timestamp", "key", "value", "headers"},
};

static FieldSpec *
spec_of(PyTypeObject *type)
{
    return PyType_IsSubtype(type, &MessageType) ? &MessageSpec : &RecordSpec;
}

/* The names of the missing required arguments as CPython formats them:
 * 'a' / 'a' and 'b' / 'a', 'b', and 'c'. */
static PyObject *
missing_names(FieldSpec *spec, PyObject **f, Py_ssize_t *count)
{
    PyObject *names = PyList_New(0);
    if (names == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < spec->n_required; i++) {
        if (f[i] != NULL)
            continue;
        PyObject *quoted = PyUnicode_FromFormat("'%s'", spec->field_names[i]);
        if (quoted == NULL || PyList_Append(names, quoted) < 0) {
            Py_XDECREF(quoted);
            Py_DECREF(names);
            return NULL;
        }
        Py_DECREF(quoted);
    }
    Py_ssize_t n = PyList_GET_SIZE(names);
    *count = n;
    PyObject *text = NULL;
    if (n == 1) {
        text = Py_NewRef(PyList_GET_ITEM(names, 0));
    }
    else if (n == 2) {
        text = PyUnicode_FromFormat("%U and %U", PyList_GET_ITEM(names, 0),
                                    PyList_GET_ITEM(names, 1));
    }
    else {
        PyObject *head = PyList_GetSlice(names, 0, n - 1);
        PyObject *sep = PyUnicode_FromString(", ");
        PyObject *joined = head && sep ? PyUnicode_Join(sep, head) : NULL;
        if (joined)
            text = PyUnicode_FromFormat("%U, and %U", joined, PyList_GET_ITEM(names, n - 1));
        Py_XDECREF(head);
        Py_XDECREF(sep);
        Py_XDECREF(joined);
    }
    Py_DECREF(names);
    return text;
}

static int
assign_keyword(FieldSpec *spec, PyObject **f, PyObject *name, PyObject *value)
{
    Py_ssize_t i, n = spec->n_fields;
    for (i = 0; i < n; i++)
        if (name == spec->names[i])
            break;
    if (i == n) {
        if (!PyUnicode_Check(name)) {
            PyErr_Format(PyExc_TypeError, "%s.__new__() keywords must be strings", spec->name);
            return -1;
        }
        for (i = 0; i < n; i++)
            if (PyUnicode_Compare(name, spec->names[i]) == 0)
                break;
        if (i == n) {
            PyErr_Format(PyExc_TypeError, "%s.__new__() got an unexpected keyword argument '%U'",
                         spec->name, name);
            return -1;
        }
    }
    if (f[i] != NULL) {
        PyErr_Format(PyExc_TypeError, "%s.__new__() got multiple values for argument '%s'",
                     spec->name, spec->field_names[i]);
        return -1;
    }
    f[i] = value;
    return 0;
}

/* After the keywords: too many positional arguments, then missing ones (CPython's order). */
static int
check_arity(FieldSpec *spec, Py_ssize_t nargs, PyObject **f)
{
    Py_ssize_t n = spec->n_fields;
    if (nargs > n) {
        if (spec->n_required < n)
            PyErr_Format(PyExc_TypeError,
                         "%s.__new__() takes from %zd to %zd positional arguments but %zd were given",
                         spec->name, spec->n_required + 1, n + 1, nargs + 1);
        else
            PyErr_Format(PyExc_TypeError,
                         "%s.__new__() takes %zd positional arguments but %zd were given",
                         spec->name, n + 1, nargs + 1);
        return -1;
    }
    for (Py_ssize_t i = 0; i < spec->n_required; i++) {
        if (f[i] == NULL) {
            Py_ssize_t count = 0;
            PyObject *text = missing_names(spec, f, &count);
            if (text != NULL) {
                PyErr_Format(PyExc_TypeError,
                             "%s.__new__() missing %zd required positional argument%s: %U",
                             spec->name, count, count == 1 ? "" : "s", text);
                Py_DECREF(text);
            }
            return -1;
        }
    }
    return 0;
}

static inline int
may_be_tracked(PyObject *v)
{
    if (v == Py_None || PyBytes_CheckExact(v) || PyLong_CheckExact(v))
        return 0;
    return PyObject_IS_GC(v) && (!PyTuple_CheckExact(v) || PyObject_GC_IsTracked(v));
}

/* An instance of the exact type with uninitialised items, untracked: from the free list
 * when it has one (pymalloc and the collector's bookkeeping skipped). */
static inline PyObject *
alloc_exact(FieldSpec *spec)
{
    PyObject *op = spec->free_head;
    if (op != NULL) {
        spec->free_head = ((PyTupleObject *)op)->ob_item[0];
        spec->free_count--;
        _Py_NewReference(op);
        return op;
    }
    return (PyObject *)PyObject_GC_NewVar(PyTupleObject, spec->type, spec->n_fields);
}

static void
fields_dealloc(PyObject *op)
{
    PyTypeObject *type = Py_TYPE(op);
    FieldSpec *spec = type == &MessageType ? &MessageSpec : type == &RecordCType ? &RecordSpec : NULL;
    if (spec == NULL) {
        PyTuple_Type.tp_dealloc(op); /* a subclass, through subtype_dealloc */
        return;
    }
    PyObject_GC_UnTrack(op);
    /* The trashcan bounds the recursion of a long chain (a Message in another's headers). */
    Py_TRASHCAN_BEGIN(op, fields_dealloc)
    for (Py_ssize_t i = 0; i < Py_SIZE(op); i++)
        Py_CLEAR(((PyTupleObject *)op)->ob_item[i]);
    if (spec->free_count < FREE_MAX && Py_SIZE(op) == spec->n_fields) {
        ((PyTupleObject *)op)->ob_item[0] = spec->free_head;
        spec->free_head = op;
        spec->free_count++;
    }
    else {
        Py_TYPE(op)->tp_free(op);
    }
    Py_TRASHCAN_END
}

/* A new instance of `type` holding f (NULL: the field's default), new references. */
static PyObject *
build_fields(PyTypeObject *type, FieldSpec *spec, PyObject **f)
{
    Py_ssize_t n = spec->n_fields;
    int exact = type == spec->type;
    /* The exact type: allocated untracked (no zeroing: every item is set below).
     * A subclass may have a __dict__: its own allocator, and always tracked. */
    PyObject *self = exact ? alloc_exact(spec) : type->tp_alloc(type, n);
    if (self == NULL)
        return NULL;
    int track = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = f[i] != NULL ? f[i] : spec->defaults[i];
        PyTuple_SET_ITEM(self, i, Py_NewRef(v));
        if (!track && may_be_tracked(v))
            track = 1;
    }
    if (exact && track)
        PyObject_GC_Track(self);
    return self;
}

static PyObject *
fields_vectorcall(FieldSpec *spec, PyObject *type, PyObject *const *args, size_t nargsf,
                  PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *f[FIELDS_MAX] = {NULL, NULL, NULL, NULL, NULL};
    Py_ssize_t n = spec->n_fields, npos = nargs < n ? nargs : n;
    for (Py_ssize_t i = 0; i < npos; i++)
        f[i] = args[i];
    if (kwnames != NULL) {
        Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t k = 0; k < nkw; k++)
            if (assign_keyword(spec, f, PyTuple_GET_ITEM(kwnames, k), args[nargs + k]) < 0)
                return NULL;
    }
    if (check_arity(spec, nargs, f) < 0)
        return NULL;
    return build_fields((PyTypeObject *)type, spec, f);
}

static PyObject *
message_vectorcall(PyObject *type, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    /* The usual calls, Message(v), Message(v, k) and Message(v, key=k), without the
     * general parse: a user's loop makes one per record. */
    if (type == (PyObject *)&MessageType && (nargs == 1 || nargs == 2) &&
        (kwnames == NULL || (nargs == 1 && PyTuple_GET_SIZE(kwnames) == 1 &&
                             PyTuple_GET_ITEM(kwnames, 0) == MessageSpec.names[1]))) {
        PyObject *value = args[0], *key = nargs == 2 || kwnames != NULL ? args[1] : Py_None;
        PyObject *self = alloc_exact(&MessageSpec);
        if (self == NULL)
            return NULL;
        PyTuple_SET_ITEM(self, 0, Py_NewRef(value));
        PyTuple_SET_ITEM(self, 1, Py_NewRef(key));
        PyTuple_SET_ITEM(self, 2, Py_NewRef(EmptyTuple));
        PyTuple_SET_ITEM(self, 3, Py_NewRef(Py_None));
        if (may_be_tracked(value) || may_be_tracked(key))
            PyObject_GC_Track(self);
        return self;
    }
    return fields_vectorcall(&MessageSpec, type, args, nargsf, kwnames);
}

static PyObject *
record_vectorcall(PyObject *type, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    return fields_vectorcall(&RecordSpec, type, args, nargsf, kwnames);
}

/* tp_new: subclasses, `cls.__new__(cls, ...)` and unpickling come this way. */
static PyObject *
fields_new(PyTypeObject *type, PyObject *args, PyObject *kwargs)
{
    FieldSpec *spec = spec_of(type);
    PyObject *f[FIELDS_MAX] = {NULL, NULL, NULL, NULL, NULL};
    Py_ssize_t nargs = PyTuple_GET_SIZE(args), n = spec->n_fields;
    for (Py_ssize_t i = 0; i < nargs && i < n; i++)
        f[i] = PyTuple_GET_ITEM(args, i);
    if (kwargs != NULL) {
        Py_ssize_t pos = 0;
        PyObject *name, *value;
        while (PyDict_Next(kwargs, &pos, &name, &value))
            if (assign_keyword(spec, f, name, value) < 0)
                return NULL;
    }
    if (check_arity(spec, nargs, f) < 0)
        return NULL;
    return build_fields(type, spec, f);
}

static PyObject *
fields_repr(PyObject *self)
{
    FieldSpec *spec = spec_of(Py_TYPE(self));
    /* the class's own name, as NamedTuple's repr uses self.__class__.__name__ */
    PyObject *name = PyObject_GetAttrString((PyObject *)Py_TYPE(self), "__name__");
    if (name == NULL)
        return NULL;
    PyObject *parts = PyList_New(0);
    PyObject *result = NULL;
    if (parts == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < spec->n_fields && i < PyTuple_GET_SIZE(self); i++) {
        PyObject *part = PyUnicode_FromFormat("%s=%R", spec->field_names[i],
                                              PyTuple_GET_ITEM(self, i));
        if (part == NULL || PyList_Append(parts, part) < 0) {
            Py_XDECREF(part);
            goto done;
        }
        Py_DECREF(part);
    }
    PyObject *sep = PyUnicode_FromString(", ");
    PyObject *body = sep ? PyUnicode_Join(sep, parts) : NULL;
    Py_XDECREF(sep);
    if (body != NULL) {
        result = PyUnicode_FromFormat("%U(%U)", name, body);
        Py_DECREF(body);
    }
done:
    Py_XDECREF(parts);
    Py_DECREF(name);
    return result;
}

/* _make(iterable): an instance from exactly n_fields items (NamedTuple._make). */
static PyObject *
fields_make(PyObject *cls, PyObject *iterable)
{
    FieldSpec *spec = spec_of((PyTypeObject *)cls);
    PyObject *items = PySequence_Tuple(iterable);
    if (items == NULL)
        return NULL;
    PyObject *result = NULL;
    if (PyTuple_GET_SIZE(items) != spec->n_fields) {
        PyErr_Format(PyExc_TypeError, "Expected %zd arguments, got %zd", spec->n_fields,
                     PyTuple_GET_SIZE(items));
    }
    else {
        PyObject *f[FIELDS_MAX] = {NULL, NULL, NULL, NULL, NULL};
        for (Py_ssize_t i = 0; i < spec->n_fields; i++)
            f[i] = PyTuple_GET_ITEM(items, i);
        result = build_fields((PyTypeObject *)cls, spec, f);
    }
    Py_DECREF(items);
    return result;
}

/* _replace(**changes): NamedTuple._replace, through the instance's own _make. */
static PyObject *
fields_replace(PyObject *self, PyObject *args, PyObject *kwargs)
{
    FieldSpec *spec = spec_of(Py_TYPE(self));
    if (PyTuple_GET_SIZE(args) != 0) {
        PyErr_Format(PyExc_TypeError,
                     "%s._replace() takes 1 positional argument but %zd were given", spec->name,
                     PyTuple_GET_SIZE(args) + 1);
        return NULL;
    }
    PyObject *changes = kwargs != NULL ? PyDict_Copy(kwargs) : PyDict_New();
    PyObject *items = changes ? PyList_New(0) : NULL;
    PyObject *result = NULL;
    if (items == NULL)
        goto done;
    for (Py_ssize_t i = 0; i < spec->n_fields && i < PyTuple_GET_SIZE(self); i++) {
        PyObject *v = PyDict_GetItemWithError(changes, spec->names[i]);
        if (v == NULL && PyErr_Occurred())
            goto done;
        if (PyList_Append(items, v != NULL ? v : PyTuple_GET_ITEM(self, i)) < 0)
            goto done;
        if (v != NULL && PyDict_DelItem(changes, spec->names[i]) < 0)
            goto done;
    }
    result = PyObject_CallMethod(self, "_make", "O", items);
    if (result != NULL && PyDict_GET_SIZE(changes) != 0) {
        Py_CLEAR(result);
        PyObject *left = PySequence_List(changes);
        if (left != NULL) {
            PyErr_Format(PyExc_ValueError, "Got unexpected field names: %R", left);
            Py_DECREF(left);
        }
    }
done:
    Py_XDECREF(changes);
    Py_XDECREF(items);
    return result;
}

static PyObject *
fields_asdict(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    FieldSpec *spec = spec_of(Py_TYPE(self));
    PyObject *out = PyDict_New();
    if (out == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < spec->n_fields && i < PyTuple_GET_SIZE(self); i++) {
        if (PyDict_SetItem(out, spec->names[i], PyTuple_GET_ITEM(self, i)) < 0) {
            Py_DECREF(out);
            return NULL;
        }
    }
    return out;
}

static PyObject *
fields_getnewargs(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyTuple_GetSlice(self, 0, PyTuple_GET_SIZE(self));
}

/* Pickled as a call of the class by its name (logstore.model.Message): a pickle loads
 * with either codec, and a NamedTuple's pickle loads here (through tp_new). */
static PyObject *
fields_reduce(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *args = PyTuple_GetSlice(self, 0, PyTuple_GET_SIZE(self));
    if (args == NULL)
        return NULL;
    return Py_BuildValue("(ON)", (PyObject *)Py_TYPE(self), args);
}

static PyMethodDef fields_methods[] = {
    {"_make", fields_make, METH_O | METH_CLASS, "Make a new instance from a sequence or iterable."},
    {"_replace", (PyCFunction)(void (*)(void))fields_replace, METH_VARARGS | METH_KEYWORDS,
     "Return a new instance replacing specified fields with new values."},
    {"_asdict", fields_asdict, METH_NOARGS, "Return a new dict which maps field names to their values."},
    {"__getnewargs__", fields_getnewargs, METH_NOARGS, "Return self as a plain tuple."},
    {"__reduce__", fields_reduce, METH_NOARGS, "Pickled as a call of the class."},
    {NULL, NULL, 0, NULL},
};

#define ITEM_OFFSET(i) ((Py_ssize_t)(offsetof(PyTupleObject, ob_item) + (i) * sizeof(PyObject *)))

static PyMemberDef message_members[] = {
    {"value", T_OBJECT_EX, ITEM_OFFSET(0), READONLY, "Alias for field number 0"},
    {"key", T_OBJECT_EX, ITEM_OFFSET(1), READONLY, "Alias for field number 1"},
    {"headers", T_OBJECT_EX, ITEM_OFFSET(2), READONLY, "Alias for field number 2"},
    {"timestamp", T_OBJECT_EX, ITEM_OFFSET(3), READONLY, "Alias for field number 3"},
    {NULL, 0, 0, 0, NULL},
};

static PyMemberDef record_members[] = {
    {"offset", T_OBJECT_EX, ITEM_OFFSET(0), READONLY, "Alias for field number 0"},
    {"timestamp", T_OBJECT_EX, ITEM_OFFSET(1), READONLY, "Alias for field number 1"},
    {"key", T_OBJECT_EX, ITEM_OFFSET(2), READONLY, "Alias for field number 2"},
    {"value", T_OBJECT_EX, ITEM_OFFSET(3), READONLY, "Alias for field number 3"},
    {"headers", T_OBJECT_EX, ITEM_OFFSET(4), READONLY, "Alias for field number 4"},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject MessageType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "logstore.model.Message",
    .tp_basicsize = sizeof(PyTupleObject) - sizeof(PyObject *),
    .tp_itemsize = sizeof(PyObject *),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Message(value, key=None, headers=(), timestamp=None)\n--\n\n"
              "A record to append. ``timestamp=None`` means \"now\" (the log's clock).",
    .tp_dealloc = fields_dealloc,
    .tp_repr = fields_repr,
    .tp_methods = fields_methods,
    .tp_members = message_members,
    .tp_new = fields_new,
    .tp_vectorcall = message_vectorcall,
};

static PyTypeObject RecordCType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "logstore.model.Record",
    .tp_basicsize = sizeof(PyTupleObject) - sizeof(PyObject *),
    .tp_itemsize = sizeof(PyObject *),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Record(offset, timestamp, key, value, headers)\n--\n\n"
              "A record read back from a log.",
    .tp_dealloc = fields_dealloc,
    .tp_repr = fields_repr,
    .tp_methods = fields_methods,
    .tp_members = record_members,
    .tp_new = fields_new,
    .tp_vectorcall = record_vectorcall,
};

/* A Record of the configured type from five new references (stolen), untracked. */
static PyObject *
new_record(PyObject *offset, PyObject *timestamp, PyObject *key, PyObject *value,
           PyObject *headers)
{
    PyObject *record = RecordType == &RecordCType ? alloc_exact(&RecordSpec)
                                                  : RecordType->tp_alloc(RecordType, 5);
    if (record == NULL) {
        Py_DECREF(offset);
        Py_DECREF(timestamp);
        Py_DECREF(key);
        Py_DECREF(value);
        Py_DECREF(headers);
        return NULL;
    }
    PyTuple_SET_ITEM(record, 0, offset);
    PyTuple_SET_ITEM(record, 1, timestamp);
    PyTuple_SET_ITEM(record, 2, key);
    PyTuple_SET_ITEM(record, 3, value);
    PyTuple_SET_ITEM(record, 4, headers);
    /* A record holds only ints, bytes and tuples of str/bytes: it can never be part of a
     * reference cycle, so the cycle collector need not track it (as CPython itself
     * untracks such tuples). Scans allocate millions of them. */
    if (RecordType != &RecordCType)
        PyObject_GC_UnTrack(record);
    return record;
}

static int
ready_fields(PyObject *module, FieldSpec *spec)
{
    PyTypeObject *type = spec->type;
    type->tp_base = &PyTuple_Type;
    if (PyType_Ready(type) < 0)
        return -1;
    spec->fields = PyTuple_New(spec->n_fields);
    PyObject *defaults = PyDict_New();
    if (spec->fields == NULL || defaults == NULL) {
        Py_XDECREF(defaults);
        return -1;
    }
    for (Py_ssize_t i = 0; i < spec->n_fields; i++) {
        spec->names[i] = PyUnicode_InternFromString(spec->field_names[i]);
        if (spec->names[i] == NULL)
            goto fail;
        PyTuple_SET_ITEM(spec->fields, i, Py_NewRef(spec->names[i]));
        if (i >= spec->n_required) {
            if (PyDict_SetItem(defaults, spec->names[i], spec->defaults[i]) < 0)
                goto fail;
        }
    }
    if (PyDict_SetItemString(type->tp_dict, "_fields", spec->fields) < 0 ||
        PyDict_SetItemString(type->tp_dict, "__match_args__", spec->fields) < 0 ||
        PyDict_SetItemString(type->tp_dict, "_field_defaults", defaults) < 0 ||
        PyDict_SetItemString(type->tp_dict, "__slots__", EmptyTuple) < 0)
        goto fail;
    Py_DECREF(defaults);
    PyType_Modified(type);
    Py_INCREF(type);
    if (PyModule_AddObject(module, spec->name, (PyObject *)type) < 0) {
        Py_DECREF(type);
        return -1;
    }
    return 0;
fail:
    Py_DECREF(defaults);
    return -1;
}

/* ------------------------------------------------------------------ producer buffer */

/* accumulator(batches, batch_records, batch_budget, max_buffered_bytes, require_key,
 *             Message, SendHandle, slow) -> Accumulator        accumulator._PyAccumulator
 *
 * A producer's buffer: each partition's open batch (its _Batch, its records,
 * their estimated bytes) and the bytes buffered. Every method runs under the
 * GIL without calling Python code between its checks and its changes (what
 * may run a finalizer, an allocation of a tracked object, comes first), so
 * each is atomic and `send` needs no lock. `send` takes the fast path only
 * when its twin's does (plain bytes, not a batch's first record nor the one
 * that fills it, room in the batch and the buffer); else it returns
 * slow(partition, value, key, headers, timestamp). */

#define RECORD_OVERHEAD 10 /* accumulator.RECORD_OVERHEAD */

typedef struct {
    PyObject *batch;   /* the open batch's _Batch */
    PyObject *records; /* its records (bytes values or Messages), a list */
    Py_ssize_t size;   /* their estimated bytes */
} AccLane;

typedef struct {
    PyObject_HEAD
    Py_ssize_t n_lanes;
    AccLane *lanes;
    Py_ssize_t batch_records, budget, max_buffered, buffered;
    int require_key, closed, plain_message;
    PyTypeObject *message_type;
    PyTypeObject *handle_type;
    PyObject *slow;
} Accumulator;

static PyTypeObject *AccumulatorType = NULL;
static PyObject *StrKey = NULL, *StrHeaders = NULL, *StrTimestamp = NULL;

static int
acc_traverse(Accumulator *a, visitproc visit, void *arg)
{
    for (Py_ssize_t i = 0; i < a->n_lanes; i++) {
        Py_VISIT(a->lanes[i].batch);
        Py_VISIT(a->lanes[i].records);
    }
    Py_VISIT(a->message_type);
    Py_VISIT(a->handle_type);
    Py_VISIT(a->slow);
    Py_VISIT(Py_TYPE(a));
    return 0;
}

static int
acc_clear(Accumulator *a)
{
    for (Py_ssize_t i = 0; i < a->n_lanes; i++) {
        Py_CLEAR(a->lanes[i].batch);
        Py_CLEAR(a->lanes[i].records);
    }
    Py_CLEAR(a->message_type);
    Py_CLEAR(a->handle_type);
    Py_CLEAR(a->slow);
    return 0;
}

static void
acc_dealloc(Accumulator *a)
{
    PyTypeObject *type = Py_TYPE(a);
    PyObject_GC_UnTrack(a);
    acc_clear(a);
    PyMem_Free(a->lanes);
    PyObject_GC_Del(a);
    Py_DECREF(type);
}

static AccLane *
acc_lane(Accumulator *a, PyObject *partition)
{
    Py_ssize_t p = PyLong_AsSsize_t(partition);
    if (p == -1 && PyErr_Occurred())
        return NULL;
    if (p < 0 || p >= a->n_lanes) {
        PyErr_Format(PyExc_IndexError, "no partition %zd in the accumulator", p);
        return NULL;
    }
    return &a->lanes[p];
}

/* A new handle (batch, index), untracked: its batch holds no reference back to it. */
static PyObject *
acc_handle(Accumulator *a, PyObject *handle, AccLane *lane, Py_ssize_t index)
{
    PyObject *number = PyLong_FromSsize_t(index); /* an int: not tracked, runs no finalizer */
    if (number == NULL) {
        Py_DECREF(handle);
        return NULL;
    }
    PyTuple_SET_ITEM(handle, 0, Py_NewRef(lane->batch));
    PyTuple_SET_ITEM(handle, 1, number);
    PyObject_GC_UnTrack(handle);
    return handle;
}

static int
acc_fits(Accumulator *a, AccLane *lane, Py_ssize_t size)
{
    Py_ssize_t count = PyList_GET_SIZE(lane->records);
    return !a->closed && count > 0 && count < a->batch_records - 1 &&
           lane->size + size <= a->budget && a->buffered + size <= a->max_buffered;
}

static PyObject *
acc_send_lane(Accumulator *a, PyObject *partition, AccLane *lane, PyObject *value, PyObject *key,
              PyObject *headers, PyObject *timestamp)
{
    if ((value == Py_None || PyBytes_CheckExact(value)) &&
        (PyBytes_CheckExact(key) || (key == Py_None && !a->require_key)) && timestamp == Py_None &&
        PyTuple_CheckExact(headers) && PyTuple_GET_SIZE(headers) == 0) {
        Py_ssize_t size = RECORD_OVERHEAD + (value == Py_None ? 0 : PyBytes_GET_SIZE(value)) +
                          (key == Py_None ? 0 : PyBytes_GET_SIZE(key));
        if (acc_fits(a, lane, size)) {
            PyObject *record;
            if (key == Py_None) {
                record = Py_NewRef(value);
            }
            else if (a->plain_message) {
                record = a->message_type->tp_alloc(a->message_type, 4);
                if (record == NULL)
                    return NULL;
                PyTuple_SET_ITEM(record, 0, Py_NewRef(value));
                PyTuple_SET_ITEM(record, 1, Py_NewRef(key));
                PyTuple_SET_ITEM(record, 2, Py_NewRef(EmptyTuple));
                PyTuple_SET_ITEM(record, 3, Py_NewRef(Py_None));
                PyObject_GC_UnTrack(record); /* bytes, None and (): no cycle */
            }
            else {
                PyObject *fields[2] = {value, key};
                record = PyObject_Vectorcall((PyObject *)a->message_type, fields, 2, NULL);
                if (record == NULL)
                    return NULL;
            }
            PyObject *handle = a->handle_type->tp_alloc(a->handle_type, 2);
            if (handle == NULL) {
                Py_DECREF(record);
                return NULL;
            }
            /* The allocations may have run other threads: look again before changing. */
            if (acc_fits(a, lane, size)) {
                Py_ssize_t index = PyList_GET_SIZE(lane->records);
                if (PyList_Append(lane->records, record) < 0) {
                    Py_DECREF(record);
                    Py_DECREF(handle);
                    return NULL;
                }
                Py_DECREF(record);
                lane->size += size;
                a->buffered += size;
                return acc_handle(a, handle, lane, index);
            }
            Py_DECREF(record);
            Py_DECREF(handle);
        }
    }
    PyObject *call[5] = {partition, value, key, headers, timestamp};
    return PyObject_Vectorcall(a->slow, call, 5, NULL);
}

static PyObject *
acc_send(Accumulator *a, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError, "send() takes 1 positional argument but %zd were given",
                     nargs);
        return NULL;
    }
    PyObject *key = Py_None, *headers = EmptyTuple, *timestamp = Py_None;
    Py_ssize_t nkw = kwnames == NULL ? 0 : PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i), *given = args[nargs + i];
        if (name == StrKey || PyUnicode_Compare(name, StrKey) == 0)
            key = given;
        else if (name == StrHeaders || PyUnicode_Compare(name, StrHeaders) == 0)
            headers = given;
        else if (name == StrTimestamp || PyUnicode_Compare(name, StrTimestamp) == 0)
            timestamp = given;
        else {
            PyErr_Format(PyExc_TypeError, "send() got an unexpected keyword argument '%U'", name);
            return NULL;
        }
    }
    static PyObject *zero = NULL;
    if (zero == NULL && (zero = PyLong_FromLong(0)) == NULL)
        return NULL;
    return acc_send_lane(a, zero, &a->lanes[0], args[0], key, headers, timestamp);
}

static PyObject *
acc_send_to(Accumulator *a, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "send_to(partition, value, key, headers, timestamp) takes 5 arguments");
        return NULL;
    }
    AccLane *lane = acc_lane(a, args[0]);
    if (lane == NULL)
        return NULL;
    return acc_send_lane(a, args[0], lane, args[1], args[2], args[3], args[4]);
}

static PyObject *
acc_push(Accumulator *a, PyObject *args)
{
    PyObject *partition, *record;
    Py_ssize_t size;
    if (!PyArg_ParseTuple(args, "OOn", &partition, &record, &size))
        return NULL;
    AccLane *lane = acc_lane(a, partition);
    if (lane == NULL)
        return NULL;
    PyObject *handle = a->handle_type->tp_alloc(a->handle_type, 2);
    if (handle == NULL)
        return NULL;
    Py_ssize_t count = PyList_GET_SIZE(lane->records);
    if (count >= a->batch_records || (count && lane->size + size > a->budget) ||
        a->buffered + size > a->max_buffered) {
        Py_DECREF(handle);
        Py_RETURN_NONE;
    }
    if (PyList_Append(lane->records, record) < 0) {
        Py_DECREF(handle);
        return NULL;
    }
    lane->size += size;
    a->buffered += size;
    return acc_handle(a, handle, lane, count);
}

static PyObject *
acc_seal(Accumulator *a, PyObject *args)
{
    PyObject *partition, *batch;
    if (!PyArg_ParseTuple(args, "OO", &partition, &batch))
        return NULL;
    AccLane *lane = acc_lane(a, partition);
    if (lane == NULL)
        return NULL;
    PyObject *records = PyList_New(0), *size = PyLong_FromSsize_t(lane->size);
    PyObject *sealed = PyTuple_New(3);
    if (records == NULL || size == NULL || sealed == NULL) {
        Py_XDECREF(records);
        Py_XDECREF(size);
        Py_XDECREF(sealed);
        return NULL;
    }
    if (PyList_GET_SIZE(lane->records) == 0) {
        Py_DECREF(records);
        Py_DECREF(size);
        Py_DECREF(sealed);
        Py_RETURN_NONE;
    }
    Py_DECREF(size); /* the allocations may have run other threads: take the size now */
    size = PyLong_FromSsize_t(lane->size);
    if (size == NULL) {
        Py_DECREF(records);
        Py_DECREF(sealed);
        return NULL;
    }
    PyTuple_SET_ITEM(sealed, 0, lane->batch); /* the lane's references move into the tuple */
    PyTuple_SET_ITEM(sealed, 1, lane->records);
    PyTuple_SET_ITEM(sealed, 2, size);
    lane->batch = Py_NewRef(batch);
    lane->records = records;
    lane->size = 0;
    return sealed;
}

static PyObject *
acc_release(Accumulator *a, PyObject *arg)
{
    Py_ssize_t size = PyLong_AsSsize_t(arg);
    if (size == -1 && PyErr_Occurred())
        return NULL;
    a->buffered -= size;
    Py_RETURN_NONE;
}

static PyObject *
acc_close(Accumulator *a, PyObject *unused)
{
    a->closed = 1;
    Py_RETURN_NONE;
}

static PyObject *
acc_count(Accumulator *a, PyObject *partition)
{
    AccLane *lane = acc_lane(a, partition);
    return lane == NULL ? NULL : PyLong_FromSsize_t(PyList_GET_SIZE(lane->records));
}

static PyObject *
acc_batch(Accumulator *a, PyObject *partition)
{
    AccLane *lane = acc_lane(a, partition);
    return lane == NULL ? NULL : Py_NewRef(lane->batch);
}

static PyObject *
acc_get_buffered(Accumulator *a, void *closure)
{
    return PyLong_FromSsize_t(a->buffered);
}

static PyObject *
acc_get_closed(Accumulator *a, void *closure)
{
    return PyBool_FromLong(a->closed);
}

static PyMethodDef acc_methods[] = {
    {"send", (PyCFunction)(void (*)(void))acc_send, METH_FASTCALL | METH_KEYWORDS,
     "send(value, *, key=None, headers=(), timestamp=None) -> SendHandle"},
    {"send_to", (PyCFunction)(void (*)(void))acc_send_to, METH_FASTCALL,
     "send_to(partition, value, key, headers, timestamp) -> SendHandle"},
    {"push", (PyCFunction)acc_push, METH_VARARGS,
     "push(partition, record, size) -> SendHandle, or None without room"},
    {"seal", (PyCFunction)acc_seal, METH_VARARGS,
     "seal(partition, new_batch) -> (batch, records, size), or None if empty"},
    {"release", (PyCFunction)acc_release, METH_O, "release(size): bytes no longer buffered"},
    {"close", (PyCFunction)acc_close, METH_NOARGS, "close(): every later send goes slow"},
    {"count", (PyCFunction)acc_count, METH_O, "count(partition) -> records in its open batch"},
    {"batch", (PyCFunction)acc_batch, METH_O, "batch(partition) -> its open _Batch"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef acc_getset[] = {
    {"buffered", (getter)acc_get_buffered, NULL, "bytes buffered", NULL},
    {"closed", (getter)acc_get_closed, NULL, "whether close() was called", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot acc_slots[] = {
    {Py_tp_dealloc, acc_dealloc},
    {Py_tp_traverse, acc_traverse},
    {Py_tp_clear, acc_clear},
    {Py_tp_methods, acc_methods},
    {Py_tp_getset, acc_getset},
    {Py_tp_doc, "A producer's buffer: each partition's open batch and the bytes buffered."},
    {0, NULL},
};

static PyType_Spec acc_spec = {
    "logstore._speedups.Accumulator", sizeof(Accumulator), 0,
    Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION, acc_slots,
};

static PyObject *
accumulator(PyObject *self, PyObject *args)
{
    PyObject *batches, *slow;
    Py_ssize_t batch_records, budget, max_buffered;
    int require_key;
    PyTypeObject *message_type, *handle_type;
    if (!PyArg_ParseTuple(args, "O!nnnpO!O!O", &PyList_Type, &batches, &batch_records, &budget,
                          &max_buffered, &require_key, &PyType_Type, &message_type, &PyType_Type,
                          &handle_type, &slow))
        return NULL;
    if (!PyType_IsSubtype(handle_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "the handle type must be a tuple subclass");
        return NULL;
    }
    Py_ssize_t n = PyList_GET_SIZE(batches);
    if (n < 1) {
        PyErr_SetString(PyExc_ValueError, "an accumulator needs at least one partition");
        return NULL;
    }
    if (AccumulatorType == NULL) {
        StrKey = PyUnicode_InternFromString("key");
        StrHeaders = PyUnicode_InternFromString("headers");
        StrTimestamp = PyUnicode_InternFromString("timestamp");
        if (StrKey == NULL || StrHeaders == NULL || StrTimestamp == NULL)
            return NULL;
        AccumulatorType = (PyTypeObject *)PyType_FromSpec(&acc_spec);
        if (AccumulatorType == NULL)
            return NULL;
    }
    AccLane *lanes = PyMem_Calloc((size_t)n, sizeof(AccLane));
    if (lanes == NULL)
        return PyErr_NoMemory();
    for (Py_ssize_t i = 0; i < n; i++) {
        lanes[i].records = PyList_New(0);
        if (lanes[i].records == NULL) {
            for (Py_ssize_t j = 0; j <= i; j++) {
                Py_XDECREF(lanes[j].records);
                Py_XDECREF(lanes[j].batch);
            }
            PyMem_Free(lanes);
            return NULL;
        }
        lanes[i].batch = Py_NewRef(PyList_GET_ITEM(batches, i));
    }
    Accumulator *a = PyObject_GC_New(Accumulator, AccumulatorType);
    if (a == NULL) {
        for (Py_ssize_t j = 0; j < n; j++) {
            Py_DECREF(lanes[j].records);
            Py_DECREF(lanes[j].batch);
        }
        PyMem_Free(lanes);
        return NULL;
    }
    a->n_lanes = n;
    a->lanes = lanes;
    a->batch_records = batch_records;
    a->budget = budget;
    a->max_buffered = max_buffered;
    a->buffered = 0;
    a->require_key = require_key;
    a->closed = 0;
    /* A NamedTuple (no fields beyond the tuple's) is built in place; any other type is called. */
    a->plain_message = PyType_IsSubtype(message_type, &PyTuple_Type) &&
                       message_type->tp_basicsize == PyTuple_Type.tp_basicsize &&
                       message_type->tp_itemsize == PyTuple_Type.tp_itemsize &&
                       message_type->tp_dictoffset == 0;
    a->message_type = (PyTypeObject *)Py_NewRef(message_type);
    a->handle_type = (PyTypeObject *)Py_NewRef(handle_type);
    a->slow = Py_NewRef(slow);
    PyObject_GC_Track(a);
    return (PyObject *)a;
}

/* ------------------------------------------------------------------ module */

static PyObject *
configure(PyObject *self, PyObject *args)
{
    PyObject *error, *record;
    if (!PyArg_ParseTuple(args, "OO", &error, &record))
        return NULL;
    if (!PyType_Check(record) || !PyType_IsSubtype((PyTypeObject *)record, &PyTuple_Type)) {
        PyErr_SetString(PyExc_TypeError, "record type must be a tuple subclass");
        return NULL;
    }
    Py_XSETREF(CorruptLogError, Py_NewRef(error));
    Py_XSETREF(RecordType, (PyTypeObject *)Py_NewRef(record));
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS, "configure(CorruptLogError, Record): the classes to create."},
    {"wrap", wrap, METH_VARARGS, "wrap(records, topic, partition, type) -> [type(topic, partition, r)]"},
    {"number", number, METH_VARARGS, "number(routes, starts) -> [(partition, offset)]"},
    {"route", route, METH_VARARGS,
     "route(items, partitions, round_robin_start) -> (routes, groups, next round robin) or None"},
    {"check_messages", check_messages, METH_VARARGS,
     "check_messages(items, require_keys, Message) -> True if encode_section can take them as they are"},
    {"encode_section", encode_section, METH_VARARGS,
     "encode_section(entries, base_timestamp, start, stop, limit_bytes, offset_deltas, now)"
     " -> (bytes, index after the last encoded entry, max timestamp)"},
    {"decode_section", decode_section, METH_VARARGS,
     "decode_section(data, base_offset, base_timestamp, fixed_timestamp, skip_below,"
     " record_count, last_offset_delta[, limit[, build]]) -> list of Record (at most limit);"
     " build false: every record checked, none built, the number without a key"},
    {"accumulator", accumulator, METH_VARARGS,
     "accumulator(batches, batch_records, batch_budget, max_buffered_bytes, require_key,"
     " Message, SendHandle, slow) -> a producer's buffer (accumulator._PyAccumulator)"},
    {"read_stored", read_stored, METH_VARARGS,
     "read_stored(fd, position, available, budget, at_least_one, expected, end_offset, crc)"
     " -> (bytes of whole checked batches, next expected offset, status 0 all/1 budget/2 other)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "logstore._speedups",
    "The per-record hot paths of the RecordBatch v2 codec, in C.", -1, methods,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    EmptyTuple = PyTuple_New(0);
    if (EmptyTuple == NULL)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    MessageSpec.defaults[1] = Py_None;
    MessageSpec.defaults[2] = EmptyTuple;
    MessageSpec.defaults[3] = Py_None;
    if (ready_fields(m, &MessageSpec) < 0 || ready_fields(m, &RecordSpec) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
