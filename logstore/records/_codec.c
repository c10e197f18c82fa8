/* logstore.records._codec: the compiled twin of the RecordBatch v2 record codec's hot loops.
 *
 * Each function here is a drop-in equivalent of a pure-Python function, which stays the
 * reference (tests/unit/records/test_codec_twins.py holds the two to byte-identical output,
 * equal results and the same exception class on any input):
 *
 *   encode_records     b"".join(batch._encode_records(records, base_timestamp))
 *   decode_record_set  decode._decode_record_set (with _skip_records and _decode_headers)
 *   check_record_set   validate._check_record_set (with _check_headers)
 *   encode_varint      batch.encode_varint
 *   decode_varint      batch.decode_varint
 *
 * and the producer's per-record path (tests/unit/records/test_builder.py):
 *
 *   BatchBuilder       builder.PyBatchBuilder (append atomic under the interpreter lock)
 *   murmur3            mmh3.hash(key, 0, False), the default partitioner's hash
 *   send_keyed         Producer.send()'s Python code for a keyed record (or None: the
 *                      Python code decides)
 *
 * The record layout is in logstore/records/batch.py. The data decoded here may come off the
 * network: every read is bounds-checked against the buffer, and malformed data raises what
 * the Python code raises (IndexError where it indexes past the end of the buffer,
 * ValueError for an impossible length or a varint longer than 10 bytes, UnicodeDecodeError
 * for a header key that is not UTF-8); the callers turn these into CorruptRecordError.
 * A 10-byte varint carries up to 70 bits and the Python code returns whatever they say, so
 * values outside int64 are kept (Varint.wide) and become Python ints the same way.
 *
 * Arguments: positional only, all of them. Data is any C-contiguous buffer, read as bytes
 * (keys and values come back as bytes whatever the buffer's type). decode_record_set
 * refuses a negative pos (ValueError), where the Python code would index from the end.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <limits.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

typedef unsigned long long u64;

/* --------------------------------------------------------------------------- varints */

typedef struct {
    long long value; /* the value; when wide, LLONG_MIN or LLONG_MAX by its sign */
    int wide;        /* 1: the value does not fit in 64 bits (low/high hold it) */
    u64 low;         /* zig-zag bits 0-63 */
    unsigned high;   /* zig-zag bits 64-69 */
} Varint;

static void
index_error(const char *what, Py_ssize_t pos)
{
    PyErr_Format(PyExc_IndexError, "%s at position %zd runs past the end of the data", what,
                 pos);
}

static int
read_varint_slow(const unsigned char *d, Py_ssize_t n, Py_ssize_t *pos, Varint *v)
{
    Py_ssize_t p = *pos;
    u64 z = 0;
    unsigned high = 0;
    unsigned shift = 0;
    for (;;) {
        if (p >= n) {
            index_error("varint", *pos);
            return -1;
        }
        unsigned byte = d[p++];
        if (shift < 63) {
            z |= (u64)(byte & 0x7F) << shift;
        }
        else { /* the tenth byte: bit 63, and bits 64-69 that no int64 holds */
            z |= (u64)(byte & 1) << 63;
            high = (byte & 0x7F) >> 1;
        }
        if (byte < 0x80) {
            break;
        }
        shift += 7;
        if (shift > 63) {
            PyErr_Format(PyExc_ValueError, "varint at position %zd longer than 10 bytes", *pos);
            return -1;
        }
    }
    *pos = p;
    v->low = z;
    v->high = high;
    v->wide = high != 0;
    if (high) {
        v->value = (z & 1) ? LLONG_MIN : LLONG_MAX;
    }
    else {
        v->value = (z & 1) ? -(long long)(z >> 1) - 1 : (long long)(z >> 1);
    }
    return 0;
}

/* Read the zig-zag varint at d[*pos] and advance *pos; IndexError when it runs past n,
 * ValueError when it is longer than 10 bytes. */
static inline int
read_varint(const unsigned char *d, Py_ssize_t n, Py_ssize_t *pos, Varint *v)
{
    Py_ssize_t p = *pos;
    if (p < n && d[p] < 0x80) {
        unsigned b = d[p];
        v->value = (b & 1) ? -(long long)(b >> 1) - 1 : (long long)(b >> 1);
        v->wide = 0;
        *pos = p + 1;
        return 0;
    }
    return read_varint_slow(d, n, pos, v);
}

/* The Python int a varint holds (a wide one included). */
static PyObject *
varint_to_long(const Varint *v)
{
    if (!v->wide) {
        return PyLong_FromLongLong(v->value);
    }
    /* z = high * 2**64 + low; the value is z >> 1, or ~(z >> 1) when z is odd */
    PyObject *high = PyLong_FromUnsignedLong(v->high);
    PyObject *shift = PyLong_FromLong(63);
    PyObject *half_low = PyLong_FromUnsignedLongLong(v->low >> 1);
    PyObject *top = NULL, *half = NULL, *out = NULL;
    if (high && shift && half_low) {
        top = PyNumber_Lshift(high, shift);
    }
    if (top) {
        half = PyNumber_Or(top, half_low);
    }
    if (half) {
        out = (v->low & 1) ? PyNumber_Invert(half) : Py_NewRef(half);
    }
    Py_XDECREF(high);
    Py_XDECREF(shift);
    Py_XDECREF(half_low);
    Py_XDECREF(top);
    Py_XDECREF(half);
    return out;
}

static inline u64
zigzag(long long value)
{
    u64 doubled = (u64)value << 1;
    return value < 0 ? ~doubled : doubled;
}

/* batch._zigzag_varint's ((value << 1) ^ (value >> 63)) & (2**64 - 1) for any int. */
static int
zigzag_of_long(PyObject *value, u64 *out)
{
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(value, &overflow);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (!overflow) {
        *out = zigzag(v);
        return 0;
    }
    /* value = q * 2**63 + r: (value << 1) mod 2**64 is 2r, and value >> 63 is q */
    u64 low = PyLong_AsUnsignedLongLongMask(value);
    if (low == (u64)-1 && PyErr_Occurred()) {
        return -1;
    }
    PyObject *shift = PyLong_FromLong(63);
    if (shift == NULL) {
        return -1;
    }
    PyObject *q = PyNumber_Rshift(value, shift);
    Py_DECREF(shift);
    if (q == NULL) {
        return -1;
    }
    u64 q_low = PyLong_AsUnsignedLongLongMask(q);
    Py_DECREF(q);
    if (q_low == (u64)-1 && PyErr_Occurred()) {
        return -1;
    }
    *out = (low << 1) ^ q_low;
    return 0;
}

static inline Py_ssize_t
varint_size(u64 z)
{
    Py_ssize_t size = 1;
    while (z >= 0x80) {
        z >>= 7;
        size++;
    }
    return size;
}

static inline char *
put_varint(char *p, u64 z)
{
    while (z >= 0x80) {
        *p++ = (char)((z & 0x7F) | 0x80);
        z >>= 7;
    }
    *p++ = (char)z;
    return p;
}

static PyObject *
codec_encode_varint(PyObject *Py_UNUSED(module), PyObject *value)
{
    if (!PyLong_Check(value)) {
        PyErr_Format(PyExc_TypeError, "encode_varint() takes an int, not %.100s",
                     Py_TYPE(value)->tp_name);
        return NULL;
    }
    u64 z;
    if (zigzag_of_long(value, &z) < 0) {
        return NULL;
    }
    char buf[10];
    return PyBytes_FromStringAndSize(buf, put_varint(buf, z) - buf);
}

static PyObject *
codec_decode_varint(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "decode_varint() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    PyObject *result = NULL;
    /* as buf[pos] does: a negative pos counts from the end, a huge one is an IndexError */
    Py_ssize_t pos = PyNumber_AsSsize_t(args[1], PyExc_IndexError);
    if (pos == -1 && PyErr_Occurred()) {
        goto done;
    }
    const unsigned char *d = view.buf;
    Py_ssize_t n = view.len;
    Varint v = {0, 0, 0, 0};
    unsigned shift = 0;
    for (;;) {
        Py_ssize_t at = pos < 0 ? pos + n : pos;
        if (at < 0 || at >= n) {
            PyErr_SetString(PyExc_IndexError, "index out of range");
            goto done;
        }
        unsigned byte = d[at];
        pos++;
        if (shift < 63) {
            v.low |= (u64)(byte & 0x7F) << shift;
        }
        else {
            v.low |= (u64)(byte & 1) << 63;
            v.high = (byte & 0x7F) >> 1;
        }
        if (byte < 0x80) {
            break;
        }
        shift += 7;
        if (shift > 63) {
            PyErr_SetString(PyExc_ValueError, "varint longer than 10 bytes");
            goto done;
        }
    }
    v.wide = v.high != 0;
    v.value = (v.low & 1) ? -(long long)(v.low >> 1) - 1 : (long long)(v.low >> 1);
    PyObject *value = varint_to_long(&v);
    PyObject *next = value ? PyLong_FromSsize_t(pos) : NULL;
    if (next) {
        result = PyTuple_Pack(2, value, next);
    }
    Py_XDECREF(value);
    Py_XDECREF(next);
done:
    PyBuffer_Release(&view);
    return result;
}

/* --------------------------------------------------------------------------- helpers */

/* Unpack ``obj`` into ``n`` new references as ``a, b, ... = obj`` does (the same
 * exception classes: TypeError for a non-iterable, ValueError for a wrong count). */
static int
unpack(PyObject *obj, Py_ssize_t n, PyObject **out)
{
    if (PyTuple_CheckExact(obj) || PyList_CheckExact(obj)) {
        Py_ssize_t size = Py_SIZE(obj);
        if (size != n) {
            if (size < n) {
                PyErr_Format(PyExc_ValueError,
                             "not enough values to unpack (expected %zd, got %zd)", n, size);
            }
            else {
                PyErr_Format(PyExc_ValueError, "too many values to unpack (expected %zd)", n);
            }
            return -1;
        }
        PyObject **items = PyTuple_CheckExact(obj) ? ((PyTupleObject *)obj)->ob_item
                                                   : ((PyListObject *)obj)->ob_item;
        for (Py_ssize_t i = 0; i < n; i++) {
            out[i] = Py_NewRef(items[i]);
        }
        return 0;
    }
    PyObject *it = PyObject_GetIter(obj);
    if (it == NULL) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Format(PyExc_TypeError, "cannot unpack non-iterable %.200s object",
                         Py_TYPE(obj)->tp_name);
        }
        return -1;
    }
    Py_ssize_t got = 0;
    for (; got < n; got++) {
        out[got] = PyIter_Next(it);
        if (out[got] == NULL) {
            if (!PyErr_Occurred()) {
                PyErr_Format(PyExc_ValueError,
                             "not enough values to unpack (expected %zd, got %zd)", n, got);
            }
            goto fail;
        }
    }
    PyObject *extra = PyIter_Next(it);
    if (extra != NULL || PyErr_Occurred()) {
        if (extra != NULL) {
            Py_DECREF(extra);
            PyErr_Format(PyExc_ValueError, "too many values to unpack (expected %zd)", n);
        }
        goto fail;
    }
    Py_DECREF(it);
    return 0;
fail:
    for (Py_ssize_t i = 0; i < got; i++) {
        Py_DECREF(out[i]);
    }
    Py_DECREF(it);
    return -1;
}

/* A growable array of ``size``-byte elements (PyMem_Realloc). */
static int
grow(void **items, Py_ssize_t *capacity, Py_ssize_t needed, size_t size)
{
    if (needed <= *capacity) {
        return 0;
    }
    Py_ssize_t capacity_new = *capacity < 8 ? 8 : *capacity;
    while (capacity_new < needed) {
        if (capacity_new > PY_SSIZE_T_MAX / 2 / (Py_ssize_t)size) {
            PyErr_NoMemory();
            return -1;
        }
        capacity_new *= 2;
    }
    void *grown = PyMem_Realloc(*items, (size_t)capacity_new * size);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    *items = grown;
    *capacity = capacity_new;
    return 0;
}

/* --------------------------------------------------------------------------- encode */

typedef struct {
    const char *data; /* NULL: a null (length -1) */
    Py_ssize_t size;  /* the bytes written (the buffer's) */
    u64 length_z;     /* zig-zag of the length written before them (Python's len()) */
} Blob;

typedef struct {
    u64 size_z, timestamp_z, count_z; /* record length, timestamp delta, header count */
    Blob key, value;
    Py_ssize_t first, headers; /* the record's headers in Plan.headers */
} PlannedRecord;

typedef struct {
    const char *key; /* UTF-8, held by a str in Plan.refs */
    Py_ssize_t key_size;
    Blob value;
} PlannedHeader;

/* What encode_records writes, planned before the output is allocated: every byte run is
 * held (a reference, or an exported buffer, which a bytearray cannot be resized under)
 * until it is copied out, whatever code a __len__ or an iterator runs meanwhile. */
typedef struct {
    PlannedRecord *records;
    Py_ssize_t n_records, cap_records;
    PlannedHeader *headers;
    Py_ssize_t n_headers, cap_headers;
    PyObject **refs;
    Py_ssize_t n_refs, cap_refs;
    Py_buffer **views; /* each allocated alone: a Py_buffer is never moved */
    Py_ssize_t n_views, cap_views;
    Py_ssize_t total; /* bytes of output */
    int refused;      /* a key or value b"".join would refuse (TypeError once planned) */
    Py_ssize_t refused_record;
} Plan;

static void
plan_release(Plan *plan)
{
    for (Py_ssize_t i = 0; i < plan->n_views; i++) {
        PyBuffer_Release(plan->views[i]);
        PyMem_Free(plan->views[i]);
    }
    for (Py_ssize_t i = 0; i < plan->n_refs; i++) {
        Py_DECREF(plan->refs[i]);
    }
    PyMem_Free(plan->views);
    PyMem_Free(plan->refs);
    PyMem_Free(plan->headers);
    PyMem_Free(plan->records);
}

static int
plan_hold(Plan *plan, PyObject *obj)
{
    if (grow((void **)&plan->refs, &plan->cap_refs, plan->n_refs + 1, sizeof(PyObject *)) < 0) {
        return -1;
    }
    plan->refs[plan->n_refs++] = Py_NewRef(obj);
    return 0;
}

static int
add_size(Py_ssize_t *total, Py_ssize_t more)
{
    if (more > PY_SSIZE_T_MAX - *total) {
        PyErr_SetString(PyExc_OverflowError, "encoded record set is too long for bytes");
        return -1;
    }
    *total += more;
    return 0;
}

/* Plan a key, value or header value: None, or its len() and its buffer's bytes. A buffer
 * refused is only noted in *refused: b"".join refuses it after the rest is encoded. */
static int
plan_blob(Plan *plan, PyObject *obj, Blob *blob, int *refused)
{
    blob->data = NULL;
    blob->size = 0;
    blob->length_z = 0;
    if (obj == Py_None) {
        return 0;
    }
    if (PyBytes_CheckExact(obj)) {
        if (plan_hold(plan, obj) < 0) {
            return -1;
        }
        blob->data = PyBytes_AS_STRING(obj);
        blob->size = PyBytes_GET_SIZE(obj);
        blob->length_z = (u64)blob->size << 1;
        return 0;
    }
    Py_ssize_t length = -1;
    if (!PyByteArray_CheckExact(obj)) {
        length = PyObject_Size(obj);
        if (length < 0) {
            return -1;
        }
    }
    if (grow((void **)&plan->views, &plan->cap_views, plan->n_views + 1, sizeof(Py_buffer *))
        < 0) {
        return -1;
    }
    Py_buffer *view = PyMem_Malloc(sizeof(Py_buffer));
    if (view == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (PyObject_GetBuffer(obj, view, PyBUF_SIMPLE) < 0) {
        PyMem_Free(view);
        PyErr_Clear();
        *refused = 1;
        blob->data = "";
        blob->length_z = (u64)(length < 0 ? 0 : length) << 1;
        return 0;
    }
    plan->views[plan->n_views++] = view;
    blob->data = view->buf;
    blob->size = view->len;
    blob->length_z = (u64)(length < 0 ? view->len : length) << 1;
    return 0;
}

static inline Py_ssize_t
blob_bytes(const Blob *blob)
{
    return blob->data == NULL ? 1 : varint_size(blob->length_z) + blob->size;
}

/* Plan a record's headers (batch._encode_headers): returns the bytes they take, or -1. */
static Py_ssize_t
plan_headers(Plan *plan, PlannedRecord *record, PyObject *headers)
{
    record->first = plan->n_headers;
    record->headers = 0;
    record->count_z = 0;
    int truthy = PyObject_IsTrue(headers);
    if (truthy <= 0) {
        return truthy < 0 ? -1 : 1; /* b"\x00": no headers */
    }
    Py_ssize_t count = PyObject_Size(headers);
    if (count < 0) {
        return -1;
    }
    record->count_z = (u64)count << 1;
    Py_ssize_t total = varint_size(record->count_z);
    PyObject *it = PyObject_GetIter(headers);
    if (it == NULL) {
        return -1;
    }
    int refused = 0;
    PyObject *item;
    while ((item = PyIter_Next(it)) != NULL) {
        PyObject *pair[2];
        int unpacked = unpack(item, 2, pair);
        Py_DECREF(item);
        if (unpacked < 0) {
            goto fail;
        }
        PyObject *hkey = pair[0], *hvalue = pair[1];
        int ok = 0;
        if (!PyUnicode_Check(hkey)) {
            PyObject *errors = PyImport_ImportModule("logstore.errors");
            PyObject *cls = errors ? PyObject_GetAttrString(errors, "InvalidRecordError") : NULL;
            if (cls) {
                PyErr_Format(cls, "header key %R must be a str", hkey);
            }
            Py_XDECREF(cls);
            Py_XDECREF(errors);
        }
        else if (grow((void **)&plan->headers, &plan->cap_headers, plan->n_headers + 1,
                      sizeof(PlannedHeader)) == 0) {
            PlannedHeader *header = &plan->headers[plan->n_headers];
            header->key = PyUnicode_AsUTF8AndSize(hkey, &header->key_size);
            if (header->key != NULL && plan_hold(plan, hkey) == 0
                && plan_blob(plan, hvalue, &header->value, &refused) == 0) {
                plan->n_headers++;
                record->headers++;
                ok = add_size(&total, varint_size((u64)header->key_size << 1)) == 0
                     && add_size(&total, header->key_size) == 0
                     && add_size(&total, blob_bytes(&header->value)) == 0;
            }
        }
        Py_DECREF(hkey);
        Py_DECREF(hvalue);
        if (!ok) {
            goto fail;
        }
    }
    if (PyErr_Occurred()) {
        goto fail;
    }
    Py_DECREF(it);
    if (refused) { /* _encode_headers's b"".join(parts) */
        PyErr_SetString(PyExc_TypeError,
                        "header value: expected a bytes-like object or None");
        return -1;
    }
    return total;
fail:
    Py_DECREF(it);
    return -1;
}

/* Plan record number ``delta`` from its four fields (batch._encode_records's loop). */
static int
plan_record(Plan *plan, Py_ssize_t delta, PyObject **fields, PyObject *base_timestamp,
            long long base, int base_fits)
{
    if (grow((void **)&plan->records, &plan->cap_records, plan->n_records + 1,
             sizeof(PlannedRecord)) < 0) {
        return -1;
    }
    PlannedRecord *record = &plan->records[plan->n_records];
    PyObject *timestamp = fields[0];
    int fast = 0;
    if (base_fits && PyLong_Check(timestamp)) {
        int overflow;
        long long t = PyLong_AsLongLongAndOverflow(timestamp, &overflow);
        if (t == -1 && PyErr_Occurred()) {
            return -1;
        }
        if (!overflow && !(base > 0 && t < LLONG_MIN + base)
            && !(base < 0 && t > LLONG_MAX + base)) {
            record->timestamp_z = zigzag(t - base);
            fast = 1;
        }
    }
    if (!fast) {
        PyObject *ts_delta = PyNumber_Subtract(timestamp, base_timestamp);
        if (ts_delta == NULL) {
            return -1;
        }
        int bad = !PyLong_Check(ts_delta);
        if (bad) {
            PyErr_Format(PyExc_TypeError, "record timestamp %R is not an int", timestamp);
        }
        if (bad || zigzag_of_long(ts_delta, &record->timestamp_z) < 0) {
            Py_DECREF(ts_delta);
            return -1;
        }
        Py_DECREF(ts_delta);
    }
    int refused = 0;
    if (plan_blob(plan, fields[1], &record->key, &refused) < 0
        || plan_blob(plan, fields[2], &record->value, &refused) < 0) {
        return -1;
    }
    if (refused && !plan->refused) {
        plan->refused = 1;
        plan->refused_record = delta;
    }
    Py_ssize_t headers_size = plan_headers(plan, record, fields[3]);
    if (headers_size < 0) {
        return -1;
    }
    plan->n_records++;
    /* size = 1 + len(tsb) + len(ob) + len(kb) + len(key) + len(vb) + len(value) + len(hb),
     * with Python's len() of key and value; kept exact past 2**64 (lo, hi) as Python's
     * ints are, then zig-zag encoded as _zigzag_varint does. */
    u64 terms[8] = {
        1,
        (u64)varint_size(record->timestamp_z),
        (u64)varint_size((u64)delta << 1),
        record->key.data ? (u64)varint_size(record->key.length_z) : 1,
        record->key.length_z >> 1,
        record->value.data ? (u64)varint_size(record->value.length_z) : 1,
        record->value.length_z >> 1,
        (u64)headers_size,
    };
    u64 lo = 0, hi = 0;
    for (int i = 0; i < 8; i++) {
        lo += terms[i];
        hi += lo < terms[i];
    }
    record->size_z = (lo << 1) ^ ((hi << 1) | (lo >> 63));
    Py_ssize_t total = plan->total;
    if (add_size(&total, varint_size(record->size_z) + 1) < 0
        || add_size(&total, varint_size(record->timestamp_z)) < 0
        || add_size(&total, varint_size((u64)delta << 1)) < 0
        || add_size(&total, blob_bytes(&record->key)) < 0
        || add_size(&total, blob_bytes(&record->value)) < 0
        || add_size(&total, headers_size) < 0) {
        return -1;
    }
    plan->total = total;
    return 0;
}

static inline char *
put_blob(char *p, const Blob *blob)
{
    if (blob->data == NULL) {
        *p++ = 0x01; /* -1: null */
        return p;
    }
    p = put_varint(p, blob->length_z);
    if (blob->size) {
        memcpy(p, blob->data, (size_t)blob->size);
    }
    return p + blob->size;
}

static PyObject *
codec_encode_records(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "encode_records() takes 2 arguments (%zd given)", nargs);
        return NULL;
    }
    PyObject *records = args[0], *base_timestamp = args[1];
    Plan plan;
    memset(&plan, 0, sizeof(plan));
    PyObject *result = NULL, *it = NULL;
    long long base = 0;
    int base_fits = 0;
    if (PyLong_Check(base_timestamp)) {
        int overflow;
        base = PyLong_AsLongLongAndOverflow(base_timestamp, &overflow);
        if (base == -1 && PyErr_Occurred()) {
            return NULL;
        }
        base_fits = !overflow;
    }
    if (PyList_CheckExact(records) || PyTuple_CheckExact(records)) {
        Py_ssize_t n = Py_SIZE(records);
        if (grow((void **)&plan.records, &plan.cap_records, n, sizeof(PlannedRecord)) < 0
            || grow((void **)&plan.refs, &plan.cap_refs, 2 * n, sizeof(PyObject *)) < 0) {
            goto done;
        }
    }
    it = PyObject_GetIter(records);
    if (it == NULL) {
        goto done;
    }
    PyObject *item;
    for (Py_ssize_t delta = 0; (item = PyIter_Next(it)) != NULL; delta++) {
        PyObject *fields[4];
        int unpacked = unpack(item, 4, fields);
        Py_DECREF(item);
        if (unpacked < 0) {
            goto done;
        }
        int planned = plan_record(&plan, delta, fields, base_timestamp, base, base_fits);
        for (int i = 0; i < 4; i++) {
            Py_DECREF(fields[i]);
        }
        if (planned < 0) {
            goto done;
        }
    }
    if (PyErr_Occurred()) {
        goto done;
    }
    if (plan.refused) { /* b"".join(_encode_records(...)) */
        PyErr_Format(PyExc_TypeError,
                     "record %zd: a key or value is not a bytes-like object or None",
                     plan.refused_record);
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, plan.total);
    if (result == NULL) {
        goto done;
    }
    char *p = PyBytes_AS_STRING(result);
    for (Py_ssize_t i = 0; i < plan.n_records; i++) {
        const PlannedRecord *record = &plan.records[i];
        p = put_varint(p, record->size_z);
        *p++ = 0; /* attributes */
        p = put_varint(p, record->timestamp_z);
        p = put_varint(p, (u64)i << 1);
        p = put_blob(p, &record->key);
        p = put_blob(p, &record->value);
        p = put_varint(p, record->count_z);
        for (Py_ssize_t h = record->first; h < record->first + record->headers; h++) {
            const PlannedHeader *header = &plan.headers[h];
            p = put_varint(p, (u64)header->key_size << 1);
            memcpy(p, header->key, (size_t)header->key_size);
            p = put_blob(p + header->key_size, &header->value);
        }
    }
    if (p != PyBytes_AS_STRING(result) + plan.total) {
        Py_CLEAR(result);
        PyErr_SetString(PyExc_SystemError, "encode_records: planned size not written");
    }
done:
    Py_XDECREF(it);
    plan_release(&plan);
    return result;
}

/* --------------------------------------------------------------------------- decode */

static void
bad_length(const char *what, const Varint *v, Py_ssize_t pos)
{
    if (v->wide) {
        PyErr_Format(PyExc_ValueError, "%s at %zd does not fit in 64 bits", what, pos);
    }
    else {
        PyErr_Format(PyExc_ValueError, "%s %lld at %zd is impossible here", what, v->value,
                     pos);
    }
}

/* decode._skip_records: the position of record ``skip`` from d[*pos], lengths only. */
static int
skip_records(const unsigned char *d, Py_ssize_t n, Py_ssize_t *pos, Py_ssize_t end,
             Py_ssize_t skip)
{
    Py_ssize_t p = *pos;
    for (Py_ssize_t i = 0; i < skip; i++) {
        Varint length;
        if (read_varint(d, n, &p, &length) < 0) {
            return -1;
        }
        if (length.wide || length.value < 6 || length.value > end - p) {
            bad_length("record length", &length, p);
            return -1;
        }
        p += (Py_ssize_t)length.value;
    }
    *pos = p;
    return 0;
}

/* decode._decode_headers: a tuple of (str, bytes | None) tuples, or NULL. */
static PyObject *
decode_headers(const unsigned char *d, Py_ssize_t n, Py_ssize_t *pos, Py_ssize_t end)
{
    Py_ssize_t p = *pos;
    Varint count;
    if (read_varint(d, n, &p, &count) < 0) {
        return NULL;
    }
    if (count.wide || count.value < 0 || count.value > end - p) {
        bad_length("header count", &count, p);
        return NULL;
    }
    /* Each header takes two bytes at least and must start before ``end``: a count above
     * (end - p + 1) / 2 fails part-way, so no tuple is allocated for it (the headers are
     * still read, to fail as the Python code does). */
    Py_ssize_t room = end - p;
    PyObject *headers = NULL;
    if (count.value <= room / 2 + 1) {
        headers = PyTuple_New((Py_ssize_t)count.value);
        if (headers == NULL) {
            return NULL;
        }
    }
    for (Py_ssize_t i = 0; i < (Py_ssize_t)count.value; i++) {
        Varint klen, vlen;
        if (read_varint(d, n, &p, &klen) < 0) {
            goto fail;
        }
        if (klen.wide || klen.value < 0 || klen.value > end - p) {
            bad_length("header key length", &klen, p);
            goto fail;
        }
        /* a slice stops at the end of the data (only when ``end`` is past it) */
        Py_ssize_t take = klen.value < n - p ? (Py_ssize_t)klen.value : n - p;
        PyObject *hkey = PyUnicode_DecodeUTF8((const char *)d + p, take, NULL);
        if (hkey == NULL) {
            goto fail;
        }
        p += (Py_ssize_t)klen.value;
        PyObject *hvalue;
        if (read_varint(d, n, &p, &vlen) < 0) {
            Py_DECREF(hkey);
            goto fail;
        }
        if (vlen.value < 0) {
            hvalue = Py_NewRef(Py_None);
        }
        else if (vlen.wide || vlen.value > end - p) {
            Py_DECREF(hkey);
            bad_length("header value length", &vlen, p);
            goto fail;
        }
        else {
            take = vlen.value < n - p ? (Py_ssize_t)vlen.value : n - p;
            hvalue = PyBytes_FromStringAndSize((const char *)d + p, take);
            p += (Py_ssize_t)vlen.value;
        }
        PyObject *pair = hvalue ? PyTuple_New(2) : NULL;
        if (pair == NULL) {
            Py_DECREF(hkey);
            Py_XDECREF(hvalue);
            goto fail;
        }
        PyTuple_SET_ITEM(pair, 0, hkey);
        PyTuple_SET_ITEM(pair, 1, hvalue);
        if (headers == NULL) {
            Py_DECREF(pair);
        }
        else {
            PyTuple_SET_ITEM(headers, i, pair);
        }
    }
    if (headers == NULL) {
        PyErr_SetString(PyExc_SystemError, "decode_headers: more headers than bytes");
        return NULL;
    }
    *pos = p;
    return headers;
fail:
    Py_XDECREF(headers);
    return NULL;
}

/* base + delta as Python computes it: int64 arithmetic while it fits, Python's + past it
 * (a huge base, a wide varint, or a base that is not an int). */
static PyObject *
add_delta(PyObject *base_obj, long long base, int base_fits, const Varint *delta)
{
    long long d = delta->value;
    if (base_fits && !delta->wide && !(base > 0 && d > LLONG_MAX - base)
        && !(base < 0 && d < LLONG_MIN - base)) {
        return PyLong_FromLongLong(base + d);
    }
    PyObject *delta_obj = varint_to_long(delta);
    if (delta_obj == NULL) {
        return NULL;
    }
    PyObject *sum = PyNumber_Add(base_obj, delta_obj);
    Py_DECREF(delta_obj);
    return sum;
}

static int
long_fits(PyObject *obj, long long *out)
{
    if (!PyLong_Check(obj)) {
        return 0;
    }
    int overflow;
    *out = PyLong_AsLongLongAndOverflow(obj, &overflow);
    if (*out == -1 && PyErr_Occurred()) {
        return -1;
    }
    return !overflow;
}

/* The position of the "timestamp" field in record_type when r._replace(timestamp=...)
 * would put it at ``index`` of an ``n``-tuple (a NamedTuple of those fields); else 0, and
 * _replace is called as the Python code does. */
static int
timestamp_at(PyObject *record_type, Py_ssize_t index, Py_ssize_t n)
{
    PyObject *fields = PyObject_GetAttrString(record_type, "_fields");
    if (fields == NULL) {
        PyErr_Clear();
        return 0;
    }
    int at = PyTuple_CheckExact(fields) && PyTuple_GET_SIZE(fields) == n
             && PyUnicode_Check(PyTuple_GET_ITEM(fields, index))
             && PyUnicode_CompareWithASCIIString(PyTuple_GET_ITEM(fields, index), "timestamp")
                    == 0;
    Py_DECREF(fields);
    return at;
}

/* The Python code's preamble: skip, whole and the count left (Python objects throughout,
 * as the arguments may be any ints). Returns the count object, or NULL. */
static PyObject *
plan_decode(PyObject *count, PyObject *base_offset, PyObject *start_offset, PyObject *limit,
            const unsigned char *d, Py_ssize_t n, Py_ssize_t *pos, Py_ssize_t end, int *whole)
{
    PyObject *zero = PyLong_FromLong(0);
    PyObject *skip = NULL, *left = Py_NewRef(count);
    if (zero == NULL) {
        goto fail;
    }
    if (start_offset != Py_None) { /* skip = min(start_offset - base_offset, count) */
        PyObject *ahead = PyNumber_Subtract(start_offset, base_offset);
        if (ahead == NULL) {
            goto fail;
        }
        int less = PyObject_RichCompareBool(count, ahead, Py_LT);
        if (less < 0) {
            Py_DECREF(ahead);
            goto fail;
        }
        skip = less ? Py_NewRef(count) : Py_NewRef(ahead);
        Py_DECREF(ahead);
    }
    *whole = 1;
    if (limit != Py_None) { /* whole = limit >= count - max(skip, 0) */
        PyObject *skipped = zero;
        if (skip != NULL) {
            int negative = PyObject_RichCompareBool(zero, skip, Py_GT);
            if (negative < 0) {
                goto fail;
            }
            skipped = negative ? zero : skip;
        }
        PyObject *rest = PyNumber_Subtract(count, skipped);
        if (rest == NULL) {
            goto fail;
        }
        *whole = PyObject_RichCompareBool(limit, rest, Py_GE);
        Py_DECREF(rest);
        if (*whole < 0) {
            goto fail;
        }
    }
    if (skip != NULL) {
        int positive = PyObject_RichCompareBool(skip, zero, Py_GT);
        if (positive < 0) {
            goto fail;
        }
        if (positive) {
            Py_ssize_t nskip = PyNumber_AsSsize_t(skip, NULL); /* range(skip) */
            if ((nskip == -1 && PyErr_Occurred()) || skip_records(d, n, pos, end, nskip) < 0) {
                goto fail;
            }
            Py_SETREF(left, PyNumber_Subtract(left, skip));
            if (left == NULL) {
                goto fail;
            }
        }
    }
    if (!*whole) { /* count = min(count, limit or 0) */
        int truthy = PyObject_IsTrue(limit);
        if (truthy < 0) {
            goto fail;
        }
        PyObject *most = truthy ? limit : zero;
        int less = PyObject_RichCompareBool(most, left, Py_LT);
        if (less < 0) {
            goto fail;
        }
        if (less) {
            Py_SETREF(left, Py_NewRef(most));
        }
    }
    Py_XDECREF(skip);
    Py_DECREF(zero);
    return left;
fail:
    Py_XDECREF(skip);
    Py_XDECREF(left);
    Py_XDECREF(zero);
    return NULL;
}

/* Decode one record at d[*pos] into ``items`` (offset, timestamp, key, value, headers:
 * new references); the timestamp is left NULL when ``skip_timestamp``. */
static int
decode_record(const unsigned char *d, Py_ssize_t n, Py_ssize_t *pos, Py_ssize_t end,
              PyObject *base_offset, long long bo, int bo_fits, PyObject *base_timestamp,
              long long bt, int bt_fits, int skip_timestamp, PyObject **items)
{
    Py_ssize_t p = *pos;
    Varint length, ts_delta, offset_delta, klen, vlen;
    if (read_varint(d, n, &p, &length) < 0) {
        return -1;
    }
    if (length.wide || length.value < 6 || length.value > end - p) {
        bad_length("record length", &length, p);
        return -1;
    }
    Py_ssize_t record_end = p + (Py_ssize_t)length.value;
    p++; /* the attributes byte, unused */
    if (read_varint(d, n, &p, &ts_delta) < 0 || read_varint(d, n, &p, &offset_delta) < 0
        || read_varint(d, n, &p, &klen) < 0) {
        return -1;
    }
    /* a key or value running to or past the end of the data fails on the next read */
    if (klen.value >= 0 && klen.value >= n - p) {
        index_error("record key", p);
        return -1;
    }
    Py_ssize_t key_at = p;
    if (klen.value >= 0) {
        p += (Py_ssize_t)klen.value;
    }
    if (read_varint(d, n, &p, &vlen) < 0) {
        return -1;
    }
    if (vlen.value >= 0 && vlen.value >= n - p) {
        index_error("record value", p);
        return -1;
    }
    Py_ssize_t value_at = p;
    if (vlen.value >= 0) {
        p += (Py_ssize_t)vlen.value;
    }
    if (p >= n) {
        index_error("record headers", p);
        return -1;
    }
    PyObject *headers;
    if (d[p] == 0) {
        headers = PyTuple_New(0);
        p++;
    }
    else {
        headers = decode_headers(d, n, &p, record_end);
    }
    if (headers == NULL) {
        return -1;
    }
    if (p != record_end) {
        Py_DECREF(headers);
        PyErr_Format(PyExc_ValueError, "record ending at %zd does not use exactly its %lld bytes",
                     p, length.value);
        return -1;
    }
    items[0] = add_delta(base_offset, bo, bo_fits, &offset_delta);
    items[1] = skip_timestamp ? NULL : add_delta(base_timestamp, bt, bt_fits, &ts_delta);
    items[2] = klen.value < 0 ? Py_NewRef(Py_None)
                              : PyBytes_FromStringAndSize((const char *)d + key_at,
                                                          (Py_ssize_t)klen.value);
    items[3] = vlen.value < 0 ? Py_NewRef(Py_None)
                              : PyBytes_FromStringAndSize((const char *)d + value_at,
                                                          (Py_ssize_t)vlen.value);
    items[4] = headers;
    if (!items[0] || (!skip_timestamp && !items[1]) || !items[2] || !items[3]) {
        for (int i = 0; i < 5; i++) {
            Py_XDECREF(items[i]);
        }
        return -1;
    }
    *pos = p;
    return 0;
}

/* r._replace(timestamp=fixed) for every record, as the Python code does. */
static int
replace_timestamps(PyObject *records, PyObject *fixed)
{
    PyObject *kwargs = Py_BuildValue("{sO}", "timestamp", fixed);
    PyObject *no_args = PyTuple_New(0);
    int rc = kwargs && no_args ? 0 : -1;
    for (Py_ssize_t i = 0; rc == 0 && i < PyList_GET_SIZE(records); i++) {
        PyObject *replace = PyObject_GetAttrString(PyList_GET_ITEM(records, i), "_replace");
        PyObject *replaced = replace ? PyObject_Call(replace, no_args, kwargs) : NULL;
        Py_XDECREF(replace);
        if (replaced == NULL) {
            rc = -1;
        }
        else {
            PyList_SetItem(records, i, replaced);
        }
    }
    Py_XDECREF(kwargs);
    Py_XDECREF(no_args);
    return rc;
}

static PyObject *
codec_decode_record_set(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 11) {
        PyErr_Format(PyExc_TypeError, "decode_record_set() takes 11 arguments (%zd given)",
                     nargs);
        return NULL;
    }
    PyObject *count = args[3], *base_offset = args[4], *base_timestamp = args[5],
             *fixed = args[6], *start_offset = args[7], *limit = args[8],
             *record_type = args[9], *topic_partition = args[10];
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const unsigned char *d = view.buf;
    Py_ssize_t n = view.len;
    PyObject *records = NULL, *left = NULL, *topic = NULL, *partition = NULL;
    Py_ssize_t pos = PyNumber_AsSsize_t(args[1], PyExc_IndexError);
    if (pos == -1 && PyErr_Occurred()) {
        goto fail;
    }
    Py_ssize_t end = PyNumber_AsSsize_t(args[2], PyExc_OverflowError);
    if (end == -1 && PyErr_Occurred()) {
        goto fail;
    }
    if (pos < 0) {
        PyErr_Format(PyExc_ValueError, "decode_record_set(): pos %zd is negative", pos);
        goto fail;
    }
    if (end < -1) {
        end = -1; /* every comparison with a negative end comes out the same */
    }
    int whole;
    left = plan_decode(count, base_offset, start_offset, limit, d, n, &pos, end, &whole);
    if (left == NULL) {
        goto fail;
    }
    int prefixed = topic_partition != Py_None;
    if (prefixed) { /* topic, partition = topic_partition or ("", -1) */
        int truthy = PyObject_IsTrue(topic_partition);
        if (truthy < 0) {
            goto fail;
        }
        if (truthy) {
            PyObject *pair[2];
            if (unpack(topic_partition, 2, pair) < 0) {
                goto fail;
            }
            topic = pair[0];
            partition = pair[1];
        }
        else {
            topic = PyUnicode_FromStringAndSize("", 0);
            partition = PyLong_FromLong(-1);
            if (topic == NULL || partition == NULL) {
                goto fail;
            }
        }
    }
    Py_ssize_t loops = PyNumber_AsSsize_t(left, NULL); /* range(count) */
    if (loops == -1 && PyErr_Occurred()) {
        goto fail;
    }
    long long bo = 0, bt = 0;
    int bo_fits = long_fits(base_offset, &bo);
    int bt_fits = bo_fits < 0 ? -1 : long_fits(base_timestamp, &bt);
    if (bt_fits < 0) {
        goto fail;
    }
    Py_ssize_t width = prefixed ? 7 : 5, ts_index = prefixed ? 3 : 1;
    int fixed_here = fixed != Py_None && timestamp_at(record_type, ts_index, width);
    /* int + int cannot fail: with the fixed timestamp in place it need not be computed */
    int skip_timestamp = fixed_here && PyLong_Check(base_timestamp);
    /* each record takes 7 bytes at least and starts inside the data: no more fit */
    Py_ssize_t room = n > pos ? (n - pos) / 7 + 1 : 0;
    Py_ssize_t capacity = loops < 0 ? 0 : (loops < room ? loops : room);
    records = PyList_New(capacity);
    if (records == NULL) {
        goto fail;
    }
    PyTypeObject *type = NULL;
    for (Py_ssize_t i = 0; i < loops; i++) {
        PyObject *items[5];
        if (decode_record(d, n, &pos, end, base_offset, bo, bo_fits, base_timestamp, bt,
                          bt_fits, skip_timestamp, items) < 0) {
            goto fail;
        }
        if (type == NULL) { /* tuple.__new__(record_type, ...) checks it at the first */
            if (!PyType_Check(record_type)
                || !PyType_IsSubtype((PyTypeObject *)record_type, &PyTuple_Type)) {
                PyErr_Format(PyExc_TypeError, "tuple.__new__(%R): not a subtype of tuple",
                             record_type);
            }
            else if (i >= capacity) {
                PyErr_SetString(PyExc_SystemError, "decode_record_set: more records than bytes");
            }
            else {
                type = (PyTypeObject *)record_type;
            }
        }
        else if (i >= capacity) {
            PyErr_SetString(PyExc_SystemError, "decode_record_set: more records than bytes");
            type = NULL;
        }
        PyObject *record = NULL;
        if (type != NULL) {
            record = type == &PyTuple_Type ? PyTuple_New(width) : type->tp_alloc(type, width);
        }
        if (record == NULL) {
            for (int k = 0; k < 5; k++) {
                Py_XDECREF(items[k]);
            }
            goto fail;
        }
        Py_ssize_t at = 0;
        if (prefixed) {
            PyTuple_SET_ITEM(record, 0, Py_NewRef(topic));
            PyTuple_SET_ITEM(record, 1, Py_NewRef(partition));
            at = 2;
        }
        PyTuple_SET_ITEM(record, at, items[0]);
        PyTuple_SET_ITEM(record, at + 1, fixed_here ? Py_NewRef(fixed) : items[1]);
        if (fixed_here) {
            Py_XDECREF(items[1]);
        }
        PyTuple_SET_ITEM(record, at + 2, items[2]);
        PyTuple_SET_ITEM(record, at + 3, items[3]);
        PyTuple_SET_ITEM(record, at + 4, items[4]);
        PyList_SET_ITEM(records, i, record);
    }
    if (whole && pos != end) {
        PyErr_Format(PyExc_ValueError, "%zd bytes left over after %S records", end - pos, left);
        goto fail;
    }
    if (fixed != Py_None && !fixed_here && replace_timestamps(records, fixed) < 0) {
        goto fail;
    }
    Py_DECREF(left);
    Py_XDECREF(topic);
    Py_XDECREF(partition);
    PyBuffer_Release(&view);
    return records;
fail:
    Py_XDECREF(records);
    Py_XDECREF(left);
    Py_XDECREF(topic);
    Py_XDECREF(partition);
    PyBuffer_Release(&view);
    return NULL;
}

/* --------------------------------------------------------------------------- check */

/* validate._check_headers: the position after the headers at d[*pos], or -1. */
static int
check_headers(const unsigned char *d, Py_ssize_t n, Py_ssize_t *pos, Py_ssize_t end)
{
    Py_ssize_t p = *pos;
    Varint count;
    if (read_varint(d, n, &p, &count) < 0) {
        return -1;
    }
    if (count.wide || count.value < 0 || count.value > end - p) {
        bad_length("header count", &count, p);
        return -1;
    }
    for (long long i = 0; i < count.value; i++) {
        Varint klen, vlen;
        if (read_varint(d, n, &p, &klen) < 0) {
            return -1;
        }
        if (klen.wide || klen.value < 0 || klen.value > end - p) {
            bad_length("header key length", &klen, p);
            return -1;
        }
        Py_ssize_t take = klen.value < n - p ? (Py_ssize_t)klen.value : n - p;
        int ascii = 1;
        for (Py_ssize_t k = 0; k < take; k++) {
            if (d[p + k] >= 0x80) {
                ascii = 0;
                break;
            }
        }
        if (!ascii) { /* str(data[pos:pos + klen], "utf-8"): the same codec decides */
            PyObject *hkey = PyUnicode_DecodeUTF8((const char *)d + p, take, NULL);
            if (hkey == NULL) {
                return -1;
            }
            Py_DECREF(hkey);
        }
        p += (Py_ssize_t)klen.value;
        if (read_varint(d, n, &p, &vlen) < 0) {
            return -1;
        }
        if (vlen.value > 0) { /* negative: null */
            if (vlen.wide || vlen.value > end - p) {
                bad_length("header value length", &vlen, p);
                return -1;
            }
            p += (Py_ssize_t)vlen.value;
        }
    }
    *pos = p;
    return 0;
}

static PyObject *
codec_check_record_set(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_Format(PyExc_TypeError, "check_record_set() takes 3 arguments (%zd given)",
                     nargs);
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const unsigned char *d = view.buf;
    Py_ssize_t n = view.len;
    Py_ssize_t end = PyNumber_AsSsize_t(args[1], PyExc_OverflowError);
    if (end == -1 && PyErr_Occurred()) {
        goto fail;
    }
    Py_ssize_t count = PyNumber_AsSsize_t(args[2], NULL); /* range(count) */
    if (count == -1 && PyErr_Occurred()) {
        goto fail;
    }
    if (end < -1) {
        end = -1;
    }
    Py_ssize_t pos = 0;
    for (Py_ssize_t expected = 0; expected < count; expected++) {
        Varint length, skipped, delta, size;
        if (read_varint(d, n, &pos, &length) < 0) {
            goto fail;
        }
        if (length.wide || length.value < 6 || length.value > end - pos) {
            bad_length("record length", &length, pos);
            goto fail;
        }
        Py_ssize_t record_end = pos + (Py_ssize_t)length.value;
        pos++; /* the attributes byte */
        if (read_varint(d, n, &pos, &skipped) < 0 || read_varint(d, n, &pos, &delta) < 0) {
            goto fail;
        }
        if (delta.wide || delta.value != expected) {
            PyErr_Format(PyExc_ValueError, "record %zd has offset delta %lld%s", expected,
                         delta.value, delta.wide ? " (more than 64 bits)" : "");
            goto fail;
        }
        for (int field = 0; field < 2; field++) { /* key, then value; negative: null */
            if (read_varint(d, n, &pos, &size) < 0) {
                goto fail;
            }
            if (size.value > 0) {
                if (size.value >= n - pos) { /* the next read is past the end */
                    index_error(field ? "record value" : "record key", pos);
                    goto fail;
                }
                pos += (Py_ssize_t)size.value;
            }
        }
        if (pos >= n) {
            index_error("record headers", pos);
            goto fail;
        }
        if (d[pos] == 0) {
            pos++;
        }
        else if (check_headers(d, n, &pos, record_end) < 0) {
            goto fail;
        }
        if (pos != record_end) {
            PyErr_Format(PyExc_ValueError,
                         "record ending at %zd does not use exactly its %lld bytes", pos,
                         length.value);
            goto fail;
        }
    }
    if (pos != end) {
        PyErr_Format(PyExc_ValueError, "%zd bytes left over after %S records", end - pos,
                     args[2]);
        goto fail;
    }
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
fail:
    PyBuffer_Release(&view);
    return NULL;
}

/* ------------------------------------------------------------------ BatchBuilder */
/* The twin of logstore/records/builder.py's BatchBuilder: a producer's records for one
   batch. append() is atomic under the interpreter lock: the record's tuple is made first
   (an allocation may run the garbage collector, and so finalizers, and so other
   threads), and only then is `closed` checked and the tuple added to the list, with no
   Python code in between: a record is never added to a builder closed meanwhile. */

typedef struct {
    PyObject_HEAD
    PyObject *records; /* list of (timestamp, key, value, headers) */
    Py_ssize_t size;
    Py_ssize_t limit;
    char closed;
} BatchBuilderObject;

static PyObject *
BatchBuilder_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    (void)args;
    (void)kwds;
    BatchBuilderObject *self = (BatchBuilderObject *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->records = PyList_New(0);
    if (self->records == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

static int
BatchBuilder_init(BatchBuilderObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"limit", NULL};
    Py_ssize_t limit;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n:BatchBuilder", kwlist, &limit))
        return -1;
    self->limit = limit;
    return 0;
}

static int
BatchBuilder_traverse(BatchBuilderObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->records);
    Py_VISIT(Py_TYPE(self));
    return 0;
}

static int
BatchBuilder_clear(BatchBuilderObject *self)
{
    Py_CLEAR(self->records);
    return 0;
}

static void
BatchBuilder_dealloc(BatchBuilderObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    BatchBuilder_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

/* Append (timestamp, key, value, headers) counting `size` bytes: the record's index,
   -1 if closed or full, -2 with an exception set. */
static Py_ssize_t
builder_append(BatchBuilderObject *self, PyObject *const *fields, Py_ssize_t size)
{
    PyObject *record = PyTuple_New(4); /* may collect garbage: before the checks */
    if (record == NULL)
        return -2;
    for (int i = 0; i < 4; i++) {
        Py_INCREF(fields[i]);
        PyTuple_SET_ITEM(record, i, fields[i]);
    }
    Py_ssize_t count = PyList_GET_SIZE(self->records);
    if (self->closed || (count > 0 && self->size + size > self->limit)) {
        Py_DECREF(record);
        return -1;
    }
    if (PyList_Append(self->records, record) < 0) { /* a realloc: no Python code runs */
        Py_DECREF(record);
        return -2;
    }
    Py_DECREF(record);
    self->size += size;
    return count;
}

static PyObject *
BatchBuilder_append(BatchBuilderObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_Format(PyExc_TypeError,
                     "append() takes 5 arguments (timestamp, key, value, headers, size), "
                     "%zd given", nargs);
        return NULL;
    }
    Py_ssize_t size = PyLong_AsSsize_t(args[4]);
    if (size == -1 && PyErr_Occurred())
        return NULL;
    Py_ssize_t index = builder_append(self, args, size);
    return index == -2 ? NULL : PyLong_FromSsize_t(index);
}

static PyObject *
BatchBuilder_close(BatchBuilderObject *self, PyObject *Py_UNUSED(ignored))
{
    self->closed = 1;
    return PyLong_FromSsize_t(PyList_GET_SIZE(self->records));
}

static Py_ssize_t
BatchBuilder_len(BatchBuilderObject *self)
{
    return PyList_GET_SIZE(self->records);
}

static PyMethodDef BatchBuilder_methods[] = {
    {"append", (PyCFunction)(void (*)(void))BatchBuilder_append, METH_FASTCALL,
     "append(timestamp, key, value, headers, size) -> index, or -1 if closed or full"},
    {"close", (PyCFunction)BatchBuilder_close, METH_NOARGS,
     "close() -> how many records: take no more"},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef BatchBuilder_members[] = {
    {"records", T_OBJECT_EX, offsetof(BatchBuilderObject, records), READONLY,
     "the records: (timestamp, key, value, headers) tuples"},
    {"size", T_PYSSIZET, offsetof(BatchBuilderObject, size), READONLY,
     "the sizes the records were appended with, summed"},
    {"limit", T_PYSSIZET, offsetof(BatchBuilderObject, limit), READONLY,
     "the most size may reach (the first record is always taken)"},
    {"closed", T_BOOL, offsetof(BatchBuilderObject, closed), READONLY,
     "whether close() was called"},
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot BatchBuilder_slots[] = {
    {Py_tp_new, BatchBuilder_new},
    {Py_tp_init, BatchBuilder_init},
    {Py_tp_dealloc, BatchBuilder_dealloc},
    {Py_tp_traverse, BatchBuilder_traverse},
    {Py_tp_clear, BatchBuilder_clear},
    {Py_tp_methods, BatchBuilder_methods},
    {Py_tp_members, BatchBuilder_members},
    {Py_sq_length, BatchBuilder_len},
    {Py_tp_doc, "Records (timestamp, key, value, headers) gathered for one batch."},
    {0, NULL},
};

static PyType_Spec BatchBuilder_spec = {
    .name = "logstore.records._codec.BatchBuilder",
    .basicsize = sizeof(BatchBuilderObject),
    .itemsize = 0,
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .slots = BatchBuilder_slots,
};


/* ------------------------------------------------------------------ send_keyed */
/* The producer's send() for its common case, in one C call (the twin is the Python
   code of Producer.send): a bytes key hashed with MurmurHash3 (x86, 32 bits, seed 0,
   unsigned: mmh3.hash(key, 0, False)) to pick the partition, the record stamped with the
   wall clock in ms (time.time_ns() // 1_000_000), appended to that partition's open
   BatchBuilder, and the future made as future_type((builder, index)). None whenever the
   Python code must decide: a key or value not bytes, the topic's metadata due for a
   look-up (monotonic clock past `expires`), no open builder, or one closed or full. */

static PyTypeObject *BatchBuilder_type = NULL; /* set when the module is executed */
static PyObject *empty_headers = NULL;

#define RECORD_OVERHEAD 36 /* producer.py's _RECORD_OVERHEAD */

static uint32_t
rotl32(uint32_t x, int r)
{
    return (x << r) | (x >> (32 - r));
}

static uint32_t
murmur3_32(const unsigned char *data, Py_ssize_t len)
{
    const uint32_t c1 = 0xcc9e2d51, c2 = 0x1b873593;
    uint32_t h = 0, k;
    Py_ssize_t i, blocks = len / 4;
    for (i = 0; i < blocks; i++) {
        const unsigned char *b = data + 4 * i;
        k = (uint32_t)b[0] | ((uint32_t)b[1] << 8) | ((uint32_t)b[2] << 16) |
            ((uint32_t)b[3] << 24);
        k *= c1;
        k = rotl32(k, 15);
        k *= c2;
        h ^= k;
        h = rotl32(h, 13);
        h = h * 5 + 0xe6546b64;
    }
    const unsigned char *tail = data + 4 * blocks;
    k = 0;
    switch (len & 3) {
    case 3:
        k ^= (uint32_t)tail[2] << 16;
        /* fall through */
    case 2:
        k ^= (uint32_t)tail[1] << 8;
        /* fall through */
    case 1:
        k ^= tail[0];
        k *= c1;
        k = rotl32(k, 15);
        k *= c2;
        h ^= k;
    }
    h ^= (uint32_t)len;
    h ^= h >> 16;
    h *= 0x85ebca6b;
    h ^= h >> 13;
    h *= 0xc2b2ae35;
    h ^= h >> 16;
    return h;
}

static PyObject *
codec_murmur3(PyObject *Py_UNUSED(module), PyObject *key)
{
    if (!PyBytes_Check(key)) {
        PyErr_SetString(PyExc_TypeError, "murmur3() takes bytes");
        return NULL;
    }
    return PyLong_FromUnsignedLong(
        murmur3_32((const unsigned char *)PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key)));
}

static PyObject *
codec_send_keyed(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError,
                        "send_keyed(batches, expires, key, value, future_type) takes 5 "
                        "arguments");
        return NULL;
    }
    PyObject *batches = args[0], *key = args[2], *value = args[3];
    PyTypeObject *future_type = (PyTypeObject *)args[4];
    if (!PyList_CheckExact(batches) || !PyBytes_CheckExact(key) ||
        !(value == Py_None || PyBytes_CheckExact(value)) || !PyType_Check(args[4]) ||
        !PyType_IsSubtype(future_type, &PyTuple_Type))
        Py_RETURN_NONE;
    double expires = PyFloat_AsDouble(args[1]);
    if (expires == -1.0 && PyErr_Occurred())
        return NULL;
    struct timespec now;
    if (clock_gettime(CLOCK_MONOTONIC, &now) != 0 ||
        (double)now.tv_sec + (double)now.tv_nsec * 1e-9 >= expires)
        Py_RETURN_NONE;
    Py_ssize_t partitions = PyList_GET_SIZE(batches);
    if (partitions < 1)
        Py_RETURN_NONE;
    Py_ssize_t klen = PyBytes_GET_SIZE(key);
    uint32_t hash = murmur3_32((const unsigned char *)PyBytes_AS_STRING(key), klen);
    Py_ssize_t partition = (Py_ssize_t)(hash % (uint32_t)partitions);
    PyObject *builder = PyList_GET_ITEM(batches, partition);
    if (BatchBuilder_type == NULL || !PyObject_TypeCheck(builder, BatchBuilder_type))
        Py_RETURN_NONE;
    Py_INCREF(builder); /* the list may change under a collection below */
    if (clock_gettime(CLOCK_REALTIME, &now) != 0) {
        Py_DECREF(builder);
        Py_RETURN_NONE;
    }
    long long ms = (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    PyObject *fields[4] = {PyLong_FromLongLong(ms), key, value, empty_headers};
    if (fields[0] == NULL) {
        Py_DECREF(builder);
        return NULL;
    }
    Py_ssize_t size = RECORD_OVERHEAD + klen + (value == Py_None ? 0 : PyBytes_GET_SIZE(value));
    Py_ssize_t index = builder_append((BatchBuilderObject *)builder, fields, size);
    Py_DECREF(fields[0]);
    if (index < 0) {
        Py_DECREF(builder);
        if (index == -2)
            return NULL;
        Py_RETURN_NONE;
    }
    PyObject *pos = PyLong_FromSsize_t(index);
    if (pos == NULL) {
        Py_DECREF(builder);
        return NULL;
    }
    PyObject *future = future_type->tp_alloc(future_type, 2);
    if (future == NULL) {
        Py_DECREF(builder);
        Py_DECREF(pos);
        return NULL;
    }
    PyTuple_SET_ITEM(future, 0, builder); /* takes the reference */
    PyTuple_SET_ITEM(future, 1, pos);
    return future;
}

/* --------------------------------------------------------------------------- module */

static PyMethodDef codec_methods[] = {
    {"encode_records", (PyCFunction)(void (*)(void))codec_encode_records, METH_FASTCALL,
     "encode_records(records, base_timestamp, /) -> bytes\n--\n\n"
     "The record set body: b''.join(batch._encode_records(records, base_timestamp))."},
    {"decode_record_set", (PyCFunction)(void (*)(void))codec_decode_record_set, METH_FASTCALL,
     "decode_record_set(data, pos, end, count, base_offset, base_timestamp, fixed_timestamp,"
     " start_offset, limit, record_type, topic_partition, /) -> list\n--\n\n"
     "decode._decode_record_set, every argument given."},
    {"check_record_set", (PyCFunction)(void (*)(void))codec_check_record_set, METH_FASTCALL,
     "check_record_set(data, end, count, /) -> None\n--\n\n"
     "validate._check_record_set."},
    {"encode_varint", codec_encode_varint, METH_O,
     "encode_varint(value, /) -> bytes\n--\n\nbatch.encode_varint."},
    {"decode_varint", (PyCFunction)(void (*)(void))codec_decode_varint, METH_FASTCALL,
     "decode_varint(buf, pos, /) -> tuple[int, int]\n--\n\nbatch.decode_varint."},
    {"murmur3", codec_murmur3, METH_O,
     "murmur3(key, /) -> int\n--\n\nmmh3.hash(key, 0, False)."},
    {"send_keyed", (PyCFunction)(void (*)(void))codec_send_keyed, METH_FASTCALL,
     "send_keyed(batches, expires, key, value, future_type, /) -> future | None\n--\n\n"
     "Producer.send()'s common case (see _codec.c); None: the Python code decides."},
    {NULL, NULL, 0, NULL},
};

static int
codec_exec(PyObject *module)
{
    PyObject *builder = PyType_FromModuleAndSpec(module, &BatchBuilder_spec, NULL);
    if (builder == NULL)
        return -1;
    if (PyModule_AddObject(module, "BatchBuilder", builder) < 0) {
        Py_DECREF(builder);
        return -1;
    }
    Py_XDECREF(BatchBuilder_type);
    Py_INCREF(builder);
    BatchBuilder_type = (PyTypeObject *)builder; /* send_keyed's check (one interpreter) */
    if (empty_headers == NULL && (empty_headers = PyTuple_New(0)) == NULL)
        return -1;
    return 0;
}

static PyModuleDef_Slot codec_slots[] = {
    {Py_mod_exec, codec_exec},
    {0, NULL},
};

static struct PyModuleDef codec_module = {
    PyModuleDef_HEAD_INIT,
    "logstore.records._codec",
    "The compiled twin of the RecordBatch v2 record codec's hot loops (see _codec.c).",
    0,
    codec_methods,
    codec_slots,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC
PyInit__codec(void)
{
    return PyModuleDef_Init(&codec_module);
}
