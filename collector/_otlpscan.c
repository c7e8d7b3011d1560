/* The receiver's check and the workers' reader, on the wire: an OTLP ExportTraceServiceRequest's
 * bytes walked in C, without building a Python object per field walked.
 *
 * scan(data, oldest_ns) -> (accepted, {reason: count}) | None
 * decode(data, oldest_ns, limits..., shard) -> the spans' values | None   (see "decode" below)
 *
 * It answers what collector/_convert.check answers (without a project) for the request protobuf
 * would parse into - the same spans accepted, the same reasons counted - or None whenever it is not
 * sure the request is an ordinary one: a field it does not know, a wire type other than the
 * schema's, a singular field given twice, a oneof given two members, an attribute value nested past
 * 48 messages deep, a string that is not valid UTF-8, anything truncated. None sends the request
 * down the Python path (protobuf's parser, then check), which gives the exact error or answer.
 *
 * So a request this accepts is one protobuf parses: the workers read it back from the log (with
 * decode, or protobuf), and nothing acknowledged may fail there. tests/test_otlpscan.py holds them to that
 * on real requests, hostile ones and random mutations, and checks the schema below against the
 * descriptors of the opentelemetry-proto installed.
 *
 * Every read is bounds-checked against the end of the enclosing message; the walk takes no
 * reference to Python objects and runs without the interpreter lock.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define UNSURE (-1)
#define MAX_VALUE_DEPTH 48 /* messages of an attribute value (KeyValue, AnyValue, ArrayValue...) within each other */

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

enum reason {
    R_BAD_TRACE_ID, R_BAD_SPAN_ID, R_BAD_PARENT_SPAN_ID, R_EMPTY_NAME, R_BAD_TIMES, R_TOO_OLD, R_COUNT
};
static const char *REASON_NAMES[R_COUNT] = {
    "bad_trace_id", "bad_span_id", "bad_parent_span_id", "empty_name", "bad_times", "too_old",
};

/* 2262-04-11T23:47:16.854775807Z: the largest time DateTime64(9) holds (exporter.MAX_NS). */
#define MAX_NS ((uint64_t)INT64_MAX)

typedef struct {
    const uint8_t *p;
    const uint8_t *end;
} cursor;

typedef struct {
    int64_t oldest_ns; /* a span that started before is too old (0: none is) */
    long long accepted;
    long long reasons[R_COUNT];
} scan_state;

/* --- the wire ------------------------------------------------------------------------------- */

static int varint(cursor *c, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (c->p >= c->end)
            return UNSURE;
        uint8_t b = *c->p++;
        if (shift == 63 && b > 1)
            return UNSURE; /* past 64 bits */
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return UNSURE;
}

/* The next field's number and wire type; 1 at the end of the message, UNSURE when unreadable. */
static int next_field(cursor *c, uint32_t *field, int *wt)
{
    uint64_t tag;
    if (c->p >= c->end)
        return 1;
    if (varint(c, &tag) < 0 || tag > UINT32_MAX || (tag >> 3) == 0)
        return UNSURE;
    *field = (uint32_t)(tag >> 3);
    *wt = (int)(tag & 7);
    return 0;
}

static int length_delimited(cursor *c, cursor *sub)
{
    uint64_t n;
    if (varint(c, &n) < 0 || n > (uint64_t)(c->end - c->p))
        return UNSURE;
    sub->p = c->p;
    sub->end = c->p + n;
    c->p += n;
    return 0;
}

static int fixed64(cursor *c, uint64_t *out)
{
    if (c->end - c->p < 8)
        return UNSURE;
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | c->p[i];
    c->p += 8;
    *out = v;
    return 0;
}

static int fixed32(cursor *c)
{
    if (c->end - c->p < 4)
        return UNSURE;
    c->p += 4;
    return 0;
}

/* Past one field's value of wire type `wt`. */
static int skip(cursor *c, int wt)
{
    uint64_t v;
    cursor sub;
    switch (wt) {
    case WT_VARINT:
        return varint(c, &v);
    case WT_I64:
        return fixed64(c, &v);
    case WT_LEN:
        return length_delimited(c, &sub);
    case WT_I32:
        return fixed32(c);
    }
    return UNSURE;
}

/* Well-formed UTF-8 (Unicode 3.9, table 3-7): what protobuf requires of a string field. */
static int utf8_valid(const uint8_t *s, const uint8_t *end)
{
    while (s < end) {
        /* ASCII, eight bytes at a time: nearly every key and value */
        while (end - s >= 8) {
            uint64_t w;
            memcpy(&w, s, 8);
            if (w & 0x8080808080808080ULL)
                break;
            s += 8;
        }
        if (s >= end)
            break;
        uint8_t b = *s;
        if (b < 0x80) {
            s++;
            continue;
        }
        size_t left = (size_t)(end - s);
        if (b >= 0xC2 && b <= 0xDF) {
            if (left < 2 || (s[1] & 0xC0) != 0x80)
                return 0;
            s += 2;
        } else if (b >= 0xE0 && b <= 0xEF) {
            if (left < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
                return 0;
            if (b == 0xE0 && s[1] < 0xA0)
                return 0; /* overlong */
            if (b == 0xED && s[1] > 0x9F)
                return 0; /* a surrogate */
            s += 3;
        } else if (b >= 0xF0 && b <= 0xF4) {
            if (left < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
                return 0;
            if (b == 0xF0 && s[1] < 0x90)
                return 0; /* overlong */
            if (b == 0xF4 && s[1] > 0x8F)
                return 0; /* past U+10FFFF */
            s += 4;
        } else {
            return 0;
        }
    }
    return 1;
}

static int string_field(cursor *c, cursor *s)
{
    if (length_delimited(c, s) < 0 || !utf8_valid(s->p, s->end))
        return UNSURE;
    return 0;
}

/* --- the schema (opentelemetry-proto's common, resource and trace messages) ------------------ */

typedef enum { F_NONE, F_VARINT, F_I64, F_I32, F_BYTES, F_STRING, F_MESSAGE } field_type;

typedef struct message message;

typedef struct {
    field_type type;     /* F_NONE: a field number this walker does not know */
    int repeated;
    const message *of;   /* F_MESSAGE: its schema */
} field;

struct message {
    const field *fields; /* indexed by field number */
    uint32_t count;      /* field numbers below this */
    int oneof;           /* every field is a member of one oneof: at most one may be given (AnyValue) */
    int value;           /* a part of an attribute value: counts toward MAX_VALUE_DEPTH */
};

#define MESSAGE(name, oneof, value) {name, sizeof(name) / sizeof(name[0]), oneof, value}

static const message ANY_VALUE, KEY_VALUE, SPAN;

static const field ARRAY_VALUE_FIELDS[] = {[1] = {F_MESSAGE, 1, &ANY_VALUE}};
static const message ARRAY_VALUE = MESSAGE(ARRAY_VALUE_FIELDS, 0, 1);
static const field KEY_VALUE_LIST_FIELDS[] = {[1] = {F_MESSAGE, 1, &KEY_VALUE}};
static const message KEY_VALUE_LIST = MESSAGE(KEY_VALUE_LIST_FIELDS, 0, 1);
static const field ANY_VALUE_FIELDS[] = {
    [1] = {F_STRING, 0, NULL},  [2] = {F_VARINT, 0, NULL},         [3] = {F_VARINT, 0, NULL},
    [4] = {F_I64, 0, NULL},     [5] = {F_MESSAGE, 0, &ARRAY_VALUE}, [6] = {F_MESSAGE, 0, &KEY_VALUE_LIST},
    [7] = {F_BYTES, 0, NULL},
};
static const message ANY_VALUE = MESSAGE(ANY_VALUE_FIELDS, 1, 1);
static const field KEY_VALUE_FIELDS[] = {[1] = {F_STRING, 0, NULL}, [2] = {F_MESSAGE, 0, &ANY_VALUE}};
static const message KEY_VALUE = MESSAGE(KEY_VALUE_FIELDS, 0, 1);

static const field RESOURCE_FIELDS[] = {[1] = {F_MESSAGE, 1, &KEY_VALUE}, [2] = {F_VARINT, 0, NULL}};
static const message RESOURCE = MESSAGE(RESOURCE_FIELDS, 0, 0);
static const field SCOPE_FIELDS[] = {
    [1] = {F_STRING, 0, NULL}, [2] = {F_STRING, 0, NULL}, [3] = {F_MESSAGE, 1, &KEY_VALUE}, [4] = {F_VARINT, 0, NULL},
};
static const message SCOPE = MESSAGE(SCOPE_FIELDS, 0, 0);
static const field EVENT_FIELDS[] = {
    [1] = {F_I64, 0, NULL}, [2] = {F_STRING, 0, NULL}, [3] = {F_MESSAGE, 1, &KEY_VALUE}, [4] = {F_VARINT, 0, NULL},
};
static const message EVENT = MESSAGE(EVENT_FIELDS, 0, 0);
static const field LINK_FIELDS[] = {
    [1] = {F_BYTES, 0, NULL},  [2] = {F_BYTES, 0, NULL},  [3] = {F_STRING, 0, NULL},
    [4] = {F_MESSAGE, 1, &KEY_VALUE}, [5] = {F_VARINT, 0, NULL}, [6] = {F_I32, 0, NULL},
};
static const message LINK = MESSAGE(LINK_FIELDS, 0, 0);
static const field STATUS_FIELDS[] = {[2] = {F_STRING, 0, NULL}, [3] = {F_VARINT, 0, NULL}};  /* 1 is reserved */
static const message STATUS = MESSAGE(STATUS_FIELDS, 0, 0);
enum { SPAN_TRACE_ID = 1, SPAN_SPAN_ID = 2, SPAN_PARENT = 4, SPAN_NAME = 5, SPAN_START = 7, SPAN_END = 8 };
static const field SPAN_FIELDS[] = {
    [1] = {F_BYTES, 0, NULL},   [2] = {F_BYTES, 0, NULL},  [3] = {F_STRING, 0, NULL},          [4] = {F_BYTES, 0, NULL},
    [5] = {F_STRING, 0, NULL},  [6] = {F_VARINT, 0, NULL}, [7] = {F_I64, 0, NULL},             [8] = {F_I64, 0, NULL},
    [9] = {F_MESSAGE, 1, &KEY_VALUE}, [10] = {F_VARINT, 0, NULL}, [11] = {F_MESSAGE, 1, &EVENT}, [12] = {F_VARINT, 0, NULL},
    [13] = {F_MESSAGE, 1, &LINK}, [14] = {F_VARINT, 0, NULL}, [15] = {F_MESSAGE, 0, &STATUS},   [16] = {F_I32, 0, NULL},
};
static const message SPAN = MESSAGE(SPAN_FIELDS, 0, 0);
static const field SCOPE_SPANS_FIELDS[] = {
    [1] = {F_MESSAGE, 0, &SCOPE}, [2] = {F_MESSAGE, 1, &SPAN}, [3] = {F_STRING, 0, NULL},
};
static const message SCOPE_SPANS = MESSAGE(SCOPE_SPANS_FIELDS, 0, 0);
static const field RESOURCE_SPANS_FIELDS[] = {
    [1] = {F_MESSAGE, 0, &RESOURCE}, [2] = {F_MESSAGE, 1, &SCOPE_SPANS}, [3] = {F_STRING, 0, NULL},
};
static const message RESOURCE_SPANS = MESSAGE(RESOURCE_SPANS_FIELDS, 0, 0);
static const field REQUEST_FIELDS[] = {[1] = {F_MESSAGE, 1, &RESOURCE_SPANS}};
static const message REQUEST = MESSAGE(REQUEST_FIELDS, 0, 0);

/* --- the walk --------------------------------------------------------------------------------- */

/* What a walk keeps of a message's fields, by number, when asked (a span's, to judge it). */
typedef struct {
    int given;
    cursor bytes; /* F_BYTES, F_STRING */
    uint64_t value; /* F_VARINT, F_I64 */
} slot;

static int span(cursor *c, scan_state *st);

/* One message, whole: every field known to its schema, of the schema's wire type, a singular field
 * once, a oneof's member once, strings UTF-8, values nested at most MAX_VALUE_DEPTH deep. */
static int walk(cursor *c, const message *m, int depth, slot *keep, scan_state *st)
{
    uint32_t number, seen = 0;
    int wt, r, members = 0;
    if (m->value && ++depth > MAX_VALUE_DEPTH)
        return UNSURE;
    while ((r = next_field(c, &number, &wt)) == 0) {
        const field *f = number < m->count ? &m->fields[number] : NULL;
        if (f == NULL || f->type == F_NONE)
            return UNSURE; /* a field of a newer schema, or none: protobuf's to read */
        if (!f->repeated) {
            if (seen & (1u << number))
                return UNSURE; /* a singular field given twice: merged or overwritten by protobuf */
            seen |= 1u << number;
        }
        if (m->oneof && members++)
            return UNSURE; /* a oneof given two members: the last wins in protobuf */
        cursor sub = {NULL, NULL};
        uint64_t v = 0;
        switch (f->type) {
        case F_VARINT:
            if (wt != WT_VARINT || varint(c, &v) < 0)
                return UNSURE;
            break;
        case F_I64:
            if (wt != WT_I64 || fixed64(c, &v) < 0)
                return UNSURE;
            break;
        case F_I32:
            if (wt != WT_I32 || fixed32(c) < 0)
                return UNSURE;
            break;
        case F_BYTES:
            if (wt != WT_LEN || length_delimited(c, &sub) < 0)
                return UNSURE;
            break;
        case F_STRING:
            if (wt != WT_LEN || string_field(c, &sub) < 0)
                return UNSURE;
            break;
        case F_MESSAGE:
            if (wt != WT_LEN || length_delimited(c, &sub) < 0)
                return UNSURE;
            if ((f->of == &SPAN ? span(&sub, st) : walk(&sub, f->of, depth, NULL, st)) < 0)
                return UNSURE;
            break;
        default:
            return UNSURE;
        }
        if (keep) {
            keep[number].given = 1;
            keep[number].bytes = sub;
            keep[number].value = v;
        }
    }
    return r < 0 ? UNSURE : 0;
}

static int all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

static size_t length(const slot *s)
{
    return s->given ? (size_t)(s->bytes.end - s->bytes.p) : 0;
}

#define SPAN_SLOTS (sizeof(SPAN_FIELDS) / sizeof(SPAN_FIELDS[0]))

/* Why a span cannot be stored (enum reason), or -1: as _convert._problem judges it. */
static int judge(const slot *f, int64_t oldest_ns)
{
    uint64_t start = f[SPAN_START].value, end = f[SPAN_END].value;
    if (length(&f[SPAN_TRACE_ID]) != 16 || all_zero(f[SPAN_TRACE_ID].bytes.p, 16))
        return R_BAD_TRACE_ID;
    if (length(&f[SPAN_SPAN_ID]) != 8 || all_zero(f[SPAN_SPAN_ID].bytes.p, 8))
        return R_BAD_SPAN_ID;
    if (length(&f[SPAN_PARENT]) != 0 && length(&f[SPAN_PARENT]) != 8)
        return R_BAD_PARENT_SPAN_ID;
    if (length(&f[SPAN_NAME]) == 0)
        return R_EMPTY_NAME;
    if (!start || end < start || end > MAX_NS)
        return R_BAD_TIMES;
    if (oldest_ns > 0 && start < (uint64_t)oldest_ns)
        return R_TOO_OLD;
    return -1;
}

/* A span: walked whole, then judged. */
static int span(cursor *c, scan_state *st)
{
    slot f[SPAN_SLOTS];
    memset(f, 0, sizeof f);
    if (walk(c, &SPAN, 0, f, st) < 0)
        return UNSURE;
    int problem = judge(f, st->oldest_ns);
    if (problem < 0)
        st->accepted++;
    else
        st->reasons[problem]++;
    return 0;
}


/* --- decode: a request's spans as Python values (a worker's convert) -------------------------
 *
 * decode(data, oldest_ns, max_attributes, max_value_length, max_events, max_links, max_array_items,
 *        shard_index, shard_count) -> ([(resource attributes, schema url, scopes)], dropped) | None
 *
 * What collector/_convert.convert reads of the request protobuf would parse, with the same limits,
 * as plain values for it to make its spans of: per resource its attributes and schema url, per
 * scope its name, version and schema url and its spans - each either the reason it is rejected
 * (a key of _convert.REASONS) or a tuple (trace id, span id, parent span id or 0, trace state,
 * name, kind, start, end, flags, attributes, events, links, status code, status message); spans of
 * other shards are left out. `dropped` counts the attributes past the per-span limit, as convert
 * does. Attribute values are what _convert._value makes of them (cut strings, bytes as hex, arrays
 * as tuples, key-value lists as text). None whenever scan() would say it is not sure: the request
 * is walked whole first, and only an ordinary one is decoded.
 */

#define CACHE_SLOTS 512 /* short ASCII strings of one request (keys, names, values): made once, shared */
#define CACHE_MAX 64

typedef struct {
    Py_ssize_t max_attributes, max_length, max_events, max_links, max_items;
    uint64_t shard_index, shard_count;
    int64_t oldest_ns;
    long long dropped;
    PyObject *cache[CACHE_SLOTS];
} decode_opts;

static PyObject *text(cursor s, Py_ssize_t limit);

#define BROKEN(msg) (PyErr_SetString(PyExc_ValueError, msg), (PyObject *)NULL)

/* A string field's text (cut to `limit` characters unless negative). Short ASCII ones are made
 * once per request: the keys, names and most values of its spans repeat. */
static PyObject *cached_text(decode_opts *o, cursor s, Py_ssize_t limit)
{
    Py_ssize_t n = s.end - s.p;
    if (n > CACHE_MAX || (limit >= 0 && n > limit))
        return text(s, limit);
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const uint8_t *p = s.p; p < s.end; p++)
        h = (h ^ *p) * 16777619u;
    PyObject **slot = &o->cache[h % CACHE_SLOTS];
    PyObject *hit = *slot;
    if (hit != NULL && PyUnicode_GET_LENGTH(hit) == n && memcmp(PyUnicode_1BYTE_DATA(hit), s.p, (size_t)n) == 0) {
        Py_INCREF(hit);
        return hit;
    }
    PyObject *u = text(s, -1);
    if (u != NULL && PyUnicode_IS_ASCII(u)) {
        Py_INCREF(u);
        Py_XSETREF(*slot, u);
    }
    return u;
}

static PyObject *text(cursor s, Py_ssize_t limit)
{
    Py_ssize_t n = s.end - s.p;
    PyObject *u = PyUnicode_DecodeUTF8((const char *)s.p, n, NULL);
    if (u != NULL && limit >= 0 && n > limit && PyUnicode_GET_LENGTH(u) > limit) {
        PyObject *cut = PyUnicode_Substring(u, 0, limit);
        Py_DECREF(u);
        return cut;
    }
    return u;
}

/* int.from_bytes(id, "big"): the public call where there is one (3.13), else CPython's own. */
static PyObject *id_int(cursor s)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyLong_FromUnsignedNativeBytes(s.p, (size_t)(s.end - s.p), Py_ASNATIVEBYTES_BIG_ENDIAN);
#else
    return _PyLong_FromByteArray(s.p, (size_t)(s.end - s.p), 0, 0);
#endif
}

static PyObject *any_value(cursor c, decode_opts *o);

/* KeyValue: its key and value (a value absent reads as None, as protobuf's default AnyValue). */
static int key_value(cursor c, decode_opts *o, PyObject **key, PyObject **value)
{
    uint32_t number;
    int wt, r;
    cursor k = {c.p, c.p}, v = {c.p, c.p};
    while ((r = next_field(&c, &number, &wt)) == 0) {
        cursor sub;
        if (wt != WT_LEN || length_delimited(&c, &sub) < 0 || (number != 1 && number != 2))
            return -1;
        if (number == 1)
            k = sub;
        else
            v = sub;
    }
    if (r < 0)
        return -1;
    *key = cached_text(o, k, -1);
    if (*key == NULL)
        return -1;
    *value = any_value(v, o);
    if (*value == NULL) {
        Py_CLEAR(*key);
        return -1;
    }
    return 0;
}

/* ArrayValue as _convert._value reads it: at most max_items items; scalars only, up to
 * max_length characters in all (8 for a number); a tuple of one type, else of their str(). */
static PyObject *array_value(cursor c, decode_opts *o)
{
    uint32_t number;
    int wt;
    Py_ssize_t used = 0, seen = 0;
    PyTypeObject *kind = NULL;
    int mixed = 0;
    PyObject *items = PyList_New(0);
    if (items == NULL)
        return NULL;
    while (seen < o->max_items && next_field(&c, &number, &wt) == 0) {
        cursor sub;
        if (number != 1 || wt != WT_LEN || length_delimited(&c, &sub) < 0) {
            Py_DECREF(items);
            return BROKEN("array");
        }
        seen++;
        PyObject *item = any_value(sub, o);
        if (item == NULL) {
            Py_DECREF(items);
            return NULL;
        }
        int is_text = PyUnicode_CheckExact(item);
        if (!is_text && !PyBool_Check(item) && !PyLong_CheckExact(item) && !PyFloat_CheckExact(item)) {
            Py_DECREF(item);
            continue;
        }
        used += is_text ? PyUnicode_GET_LENGTH(item) : 8;
        if (used > o->max_length) {
            Py_DECREF(item);
            break;
        }
        if (kind == NULL)
            kind = Py_TYPE(item);
        else if (Py_TYPE(item) != kind)
            mixed = 1;
        int failed = PyList_Append(items, item);
        Py_DECREF(item);
        if (failed) {
            Py_DECREF(items);
            return NULL;
        }
    }
    if (mixed) {
        for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
            PyObject *s = PyObject_Str(PyList_GET_ITEM(items, i));
            if (s == NULL) {
                Py_DECREF(items);
                return NULL;
            }
            PyList_SetItem(items, i, s);
        }
    }
    PyObject *out = PyList_AsTuple(items);
    Py_DECREF(items);
    return out;
}

static PyObject *hex(cursor s, Py_ssize_t limit)
{
    static const char digits[] = "0123456789abcdef";
    Py_ssize_t n = s.end - s.p;
    if (n > limit)
        n = limit;
    PyObject *out = PyUnicode_New(2 * n, 127);
    if (out == NULL)
        return NULL;
    Py_UCS1 *d = PyUnicode_1BYTE_DATA(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        d[2 * i] = (Py_UCS1)digits[s.p[i] >> 4];
        d[2 * i + 1] = (Py_UCS1)digits[s.p[i] & 15];
    }
    return out;
}

/* AnyValue, as _convert._value: None when no member is given (scan() saw to it that at most one is). */
static PyObject *any_value(cursor c, decode_opts *o)
{
    uint32_t number;
    int wt;
    uint64_t v;
    cursor sub;
    int r = next_field(&c, &number, &wt);
    if (r == 1)
        Py_RETURN_NONE;
    if (r < 0)
        return BROKEN("value");
    switch (number) {
    case 1:
        return wt == WT_LEN && length_delimited(&c, &sub) == 0 ? cached_text(o, sub, o->max_length) : BROKEN("string");
    case 2:
        return wt == WT_VARINT && varint(&c, &v) == 0 ? PyBool_FromLong(v != 0) : BROKEN("bool");
    case 3:
        return wt == WT_VARINT && varint(&c, &v) == 0 ? PyLong_FromLongLong((long long)(int64_t)v) : BROKEN("int");
    case 4: {
        double d;
        if (wt != WT_I64 || fixed64(&c, &v) < 0)
            return BROKEN("double");
        memcpy(&d, &v, sizeof d);
        return PyFloat_FromDouble(d);
    }
    case 5:
        return wt == WT_LEN && length_delimited(&c, &sub) == 0 ? array_value(sub, o) : BROKEN("array");
    case 6: {
        if (wt != WT_LEN || length_delimited(&c, &sub) < 0)
            return BROKEN("kvlist");
        PyObject *d = PyDict_New(), *key, *value;
        if (d == NULL)
            return NULL;
        while ((r = next_field(&sub, &number, &wt)) == 0) {
            cursor kv;
            if (number != 1 || wt != WT_LEN || length_delimited(&sub, &kv) < 0 || key_value(kv, o, &key, &value) < 0) {
                Py_DECREF(d);
                return PyErr_Occurred() ? NULL : BROKEN("kvlist");
            }
            r = PyDict_SetItem(d, key, value);
            Py_DECREF(key);
            Py_DECREF(value);
            if (r < 0) {
                Py_DECREF(d);
                return NULL;
            }
        }
        PyObject *s = PyObject_Str(d);
        Py_DECREF(d);
        if (s != NULL && PyUnicode_GET_LENGTH(s) > o->max_length) {
            PyObject *cut = PyUnicode_Substring(s, 0, o->max_length);
            Py_DECREF(s);
            return cut;
        }
        return s;
    }
    case 7:
        return wt == WT_LEN && length_delimited(&c, &sub) == 0 ? hex(sub, o->max_length) : BROKEN("bytes");
    }
    return BROKEN("value member");
}

/* One attribute into attrs, as _convert._attributes does: past max_attributes dropped and counted;
 * a value of None or an empty key left out. `index` counts the KeyValues of this list so far. */
static int attribute(cursor kv, decode_opts *o, Py_ssize_t *index, PyObject *attrs)
{
    PyObject *key, *value;
    if ((*index)++ >= o->max_attributes) {
        o->dropped++;
        return 0;
    }
    if (key_value(kv, o, &key, &value) < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "attribute");
        return -1;
    }
    int r = 0;
    if (value != Py_None && PyUnicode_GET_LENGTH(key) > 0)
        r = PyDict_SetItem(attrs, key, value);
    Py_DECREF(key);
    Py_DECREF(value);
    return r;
}

/* The attributes of a Resource or an InstrumentationScope's container message at field `field`. */
static PyObject *attributes_of(cursor c, uint32_t field, decode_opts *o)
{
    uint32_t number;
    int wt;
    Py_ssize_t index = 0;
    PyObject *attrs = PyDict_New();
    if (attrs == NULL)
        return NULL;
    while (next_field(&c, &number, &wt) == 0) {
        cursor sub;
        if (number == field && wt == WT_LEN) {
            if (length_delimited(&c, &sub) < 0 || attribute(sub, o, &index, attrs) < 0) {
                Py_DECREF(attrs);
                return PyErr_Occurred() ? NULL : BROKEN("attributes");
            }
        } else if (skip(&c, wt) < 0) {
            Py_DECREF(attrs);
            return BROKEN("field");
        }
    }
    return attrs;
}

/* An event: (name, time, attributes), or None past 2262 (left out, as convert does). */
static PyObject *span_event(cursor c, decode_opts *o)
{
    uint32_t number;
    int wt;
    uint64_t time = 0;
    cursor name = {c.p, c.p}, sub;
    const uint8_t *begin = c.p;
    while (next_field(&c, &number, &wt) == 0) {
        if (number == 1 && wt == WT_I64) {
            if (fixed64(&c, &time) < 0)
                return BROKEN("event");
        } else if (number == 2 && wt == WT_LEN) {
            if (length_delimited(&c, &name) < 0)
                return BROKEN("event");
        } else if (skip(&c, wt) < 0) {
            return BROKEN("event");
        }
    }
    if (time > MAX_NS)
        Py_RETURN_NONE;
    sub.p = begin;
    sub.end = c.end;
    PyObject *attrs = attributes_of(sub, 3, o);
    if (attrs == NULL)
        return NULL;
    return Py_BuildValue("(NKN)", cached_text(o, name, -1), (unsigned long long)time, attrs);
}

/* A link: (trace id, span id, attributes), or None unless both ids have their length (as convert). */
static PyObject *span_link(cursor c, decode_opts *o)
{
    uint32_t number;
    int wt;
    cursor trace = {c.p, c.p}, span_id = {c.p, c.p}, whole = c;
    while (next_field(&c, &number, &wt) == 0) {
        if (number == 1 && wt == WT_LEN) {
            if (length_delimited(&c, &trace) < 0)
                return BROKEN("link");
        } else if (number == 2 && wt == WT_LEN) {
            if (length_delimited(&c, &span_id) < 0)
                return BROKEN("link");
        } else if (skip(&c, wt) < 0) {
            return BROKEN("link");
        }
    }
    if (trace.end - trace.p != 16 || span_id.end - span_id.p != 8)
        Py_RETURN_NONE;
    PyObject *attrs = attributes_of(whole, 4, o);
    if (attrs == NULL)
        return NULL;
    return Py_BuildValue("(NNN)", id_int(trace), id_int(span_id), attrs);
}

static uint64_t shard(cursor id, uint64_t count)
{
    uint64_t r = 0; /* int.from_bytes(trace_id, "big") % count, for ids of any length */
    for (const uint8_t *p = id.p; p < id.end; p++)
        r = (r * 256 + *p) % count;
    return r;
}

/* A span of this shard: the reason it is rejected, or its tuple; NULL with no error set: another shard's. */
static PyObject *decode_span(cursor c, decode_opts *o)
{
    slot f[SPAN_SLOTS];
    uint32_t number, flags = 0;
    int wt;
    const cursor whole = c;
    memset(f, 0, sizeof f);
    while (next_field(&c, &number, &wt) == 0) {
        cursor sub = {NULL, NULL};
        uint64_t v = 0;
        if (number >= SPAN_SLOTS)
            return BROKEN("span field");
        if (wt == WT_LEN) {
            if (length_delimited(&c, &sub) < 0)
                return BROKEN("span");
        } else if (wt == WT_VARINT) {
            if (varint(&c, &v) < 0)
                return BROKEN("span");
        } else if (wt == WT_I64) {
            if (fixed64(&c, &v) < 0)
                return BROKEN("span");
        } else if (wt == WT_I32 && number == 16) {
            if (c.end - c.p < 4)
                return BROKEN("span");
            flags = (uint32_t)c.p[0] | (uint32_t)c.p[1] << 8 | (uint32_t)c.p[2] << 16 | (uint32_t)c.p[3] << 24;
            c.p += 4;
        } else {
            return BROKEN("span wire type");
        }
        f[number].given = 1;
        f[number].bytes = sub;
        f[number].value = v;
    }
    if (o->shard_count > 1 && shard(f[SPAN_TRACE_ID].bytes, o->shard_count) != o->shard_index)
        return NULL;
    int problem = judge(f, o->oldest_ns);
    if (problem >= 0)
        return PyUnicode_FromString(REASON_NAMES[problem]);

    PyObject *attrs = PyDict_New(), *events = PyList_New(0), *links = PyList_New(0), *item = NULL;
    Py_ssize_t index = 0, n_events = 0, n_links = 0;
    uint64_t code = 0;
    cursor message = {whole.p, whole.p};
    if (attrs == NULL || events == NULL || links == NULL)
        goto fail;
    c = whole;
    while (next_field(&c, &number, &wt) == 0) {
        cursor sub;
        if (wt != WT_LEN) {
            if (skip(&c, wt) < 0)
                goto broken;
            continue;
        }
        if (length_delimited(&c, &sub) < 0)
            goto broken;
        if (number == 9) {
            if (attribute(sub, o, &index, attrs) < 0)
                goto fail;
        } else if (number == 11 || number == 13) {
            if (number == 11 ? n_events++ >= o->max_events : n_links++ >= o->max_links)
                continue;
            item = number == 11 ? span_event(sub, o) : span_link(sub, o);
            if (item == NULL)
                goto fail;
            if (item != Py_None && PyList_Append(number == 11 ? events : links, item) < 0)
                goto fail;
            Py_CLEAR(item);
        } else if (number == 15) {
            uint32_t n;
            while (next_field(&sub, &n, &wt) == 0) {
                cursor m;
                if (n == 2 && wt == WT_LEN) {
                    if (length_delimited(&sub, &m) < 0)
                        goto broken;
                    message = m;
                } else if (n == 3 && wt == WT_VARINT) {
                    if (varint(&sub, &code) < 0)
                        goto broken;
                } else if (skip(&sub, wt) < 0) {
                    goto broken;
                }
            }
        }
    }
    const slot *parent = &f[SPAN_PARENT];
    PyObject *parent_id = length(parent) == 8 && !all_zero(parent->bytes.p, 8) ? id_int(parent->bytes) : PyLong_FromLong(0);
    /* enums are int32 in protobuf: a larger varint is cut to its low 32 bits, as protobuf reads it */
    return Py_BuildValue("(NNNNNiKKINNNiN)", id_int(f[SPAN_TRACE_ID].bytes), id_int(f[SPAN_SPAN_ID].bytes), parent_id,
                         text(f[3].given ? f[3].bytes : (cursor){whole.p, whole.p}, -1), cached_text(o, f[SPAN_NAME].bytes, -1),
                         (int)(int32_t)(uint32_t)f[6].value, (unsigned long long)f[SPAN_START].value,
                         (unsigned long long)f[SPAN_END].value, (unsigned int)flags, attrs, events, links,
                         (int)(int32_t)(uint32_t)code, text(message, -1));
broken:
    PyErr_SetString(PyExc_ValueError, "span");
fail:
    Py_XDECREF(item);
    Py_XDECREF(attrs);
    Py_XDECREF(events);
    Py_XDECREF(links);
    return NULL;
}


/* Singular field `number` of message c (scan() saw to it that it is given at most once); absent:
 * empty, a message's or a string's default. */
static cursor one(cursor c, uint32_t number)
{
    uint32_t k;
    int wt;
    cursor found = {c.p, c.p};
    while (next_field(&c, &k, &wt) == 0) {
        if (k == number && wt == WT_LEN)
            return length_delimited(&c, &found) < 0 ? (cursor){c.p, c.p} : found;
        if (skip(&c, wt) < 0)
            break;
    }
    return found;
}

/* Each message of repeated field `number` of c, read by `read`, in a list (an item read as NULL
 * with no error set is left out: another shard's span). */
static PyObject *each(cursor c, uint32_t number, PyObject *(*read)(cursor, decode_opts *), decode_opts *o)
{
    uint32_t k;
    int wt;
    PyObject *items = PyList_New(0);
    while (items != NULL && next_field(&c, &k, &wt) == 0) {
        cursor sub;
        if (k != number || wt != WT_LEN) {
            if (skip(&c, wt) < 0) {
                PyErr_SetString(PyExc_ValueError, "field");
                Py_CLEAR(items);
            }
            continue;
        }
        PyObject *item = NULL;
        if (length_delimited(&c, &sub) < 0)
            PyErr_SetString(PyExc_ValueError, "message");
        else
            item = read(sub, o);
        if (item == NULL ? PyErr_Occurred() != NULL : PyList_Append(items, item) < 0)
            Py_CLEAR(items);
        Py_XDECREF(item);
    }
    return items;
}

/* ScopeSpans: (name, version, schema url, [span items of this shard]). */
static PyObject *scope_spans(cursor c, decode_opts *o)
{
    cursor scope = one(c, 1);
    PyObject *spans = each(c, 2, decode_span, o);
    if (spans == NULL)
        return NULL;
    return Py_BuildValue("(NNNN)", cached_text(o, one(scope, 1), -1), cached_text(o, one(scope, 2), -1),
                         cached_text(o, one(c, 3), -1), spans);
}

/* ResourceSpans: (resource attributes, schema url, [scope spans]). */
static PyObject *resource_spans(cursor c, decode_opts *o)
{
    PyObject *attrs = attributes_of(one(c, 1), 1, o);
    if (attrs == NULL)
        return NULL;
    PyObject *scopes = each(c, 2, scope_spans, o);
    if (scopes == NULL) {
        Py_DECREF(attrs);
        return NULL;
    }
    return Py_BuildValue("(NNN)", attrs, text(one(c, 3), -1), scopes);
}

static PyObject *decode(PyObject *self, PyObject *args)
{
    Py_buffer data;
    long long oldest_ns;
    unsigned long long shard_index, shard_count;
    decode_opts o;
    scan_state st;
    int r;

    memset(&o, 0, sizeof o);
    if (!PyArg_ParseTuple(args, "y*LnnnnnKK", &data, &oldest_ns, &o.max_attributes, &o.max_length, &o.max_events,
                          &o.max_links, &o.max_items, &shard_index, &shard_count))
        return NULL;
    if (shard_count == 0 || shard_index >= shard_count || o.max_attributes < 0 || o.max_length < 0 || o.max_events < 0
        || o.max_links < 0 || o.max_items < 0) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_ValueError, "decode: a limit is negative or the shard is out of range");
        return NULL;
    }
    o.oldest_ns = oldest_ns;
    o.shard_index = shard_index;
    o.shard_count = shard_count;
    memset(&st, 0, sizeof st);
    cursor c = {(const uint8_t *)data.buf, (const uint8_t *)data.buf + data.len};
    Py_BEGIN_ALLOW_THREADS
    r = walk(&c, &REQUEST, 0, NULL, &st); /* an ordinary request, or protobuf's to read */
    Py_END_ALLOW_THREADS
    if (r < 0) {
        PyBuffer_Release(&data);
        Py_RETURN_NONE;
    }
    c.p = (const uint8_t *)data.buf;
    PyObject *groups = each(c, 1, resource_spans, &o);
    PyBuffer_Release(&data);
    for (int i = 0; i < CACHE_SLOTS; i++)
        Py_XDECREF(o.cache[i]);
    if (groups == NULL)
        return NULL;
    return Py_BuildValue("(NL)", groups, o.dropped);
}

/* --- spans: decode's items as the SDK spans _convert makes of them ---------------------------
 *
 * span_rules(ReadableSpan, SpanContext, kinds, statuses, sampled, default_state, has_is_remote, is_remote)
 * spans(items, resource, scope, out, fallback, project, project_key) -> [reason, ...]
 *
 * What _convert.convert_bytes makes of one scope's items (decode's output), in C: each common
 * span - no trace state, no events or links, a status with no message - as the ReadableSpan
 * _convert._readable builds (processor.readable_span's fields, the contexts processor.span_context
 * makes: remote, sampled, valid), appended to `out`; any other span is fallback(item)'s (the Python
 * path; a reason when it refuses it). With a project (not None: the sender's token is bound to
 * it, and the caller saw that the resource claims none), a span is stamped with it under
 * project_key, and a span that has that key at all is the Python path's (it may claim another
 * project). Returns the reasons of the spans refused, in order. `kinds`: the SpanKind of each OTLP
 * kind 0..5 (any other reads as kinds[1], INTERNAL); `statuses`: the shared Status of each code
 * 0..2 with no message. span_rules is given once, and only where processor.SDK_FIELDS_KNOWN says
 * the SDK's layout was probed. tests/test_otlpscan.py holds it to the Python path's spans.
 */

static struct {
    PyObject *span_type, *context_type, *kinds, *statuses, *sampled, *default_state;
    unsigned long long has_is_remote, is_remote;
    PyObject *k[13]; /* the span's field names, in the order readable_span sets them */
} S;

static const char *SPAN_FIELD_NAMES[13] = {
    "_name", "_context", "_kind", "_instrumentation_info", "_instrumentation_scope", "_parent", "_start_time", "_end_time",
    "_attributes", "_events", "_links", "_resource", "_status",
};

static PyObject *span_rules(PyObject *self, PyObject *args)
{
    PyObject *span_type, *context_type, *kinds, *statuses, *sampled, *default_state;
    unsigned long long has_is_remote, is_remote;
    if (!PyArg_ParseTuple(args, "O!O!O!O!OOKK", &PyType_Type, &span_type, &PyType_Type, &context_type, &PyTuple_Type, &kinds,
                          &PyTuple_Type, &statuses, &sampled, &default_state, &has_is_remote, &is_remote))
        return NULL;
    if (PyTuple_GET_SIZE(kinds) != 6 || PyTuple_GET_SIZE(statuses) != 3
        || !PyType_IsSubtype((PyTypeObject *)context_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_ValueError, "span_rules: six kinds, three statuses, and a SpanContext that is a tuple");
        return NULL;
    }
    for (int i = 0; i < 13; i++)
        if (S.k[i] == NULL && (S.k[i] = PyUnicode_InternFromString(SPAN_FIELD_NAMES[i])) == NULL)
            return NULL;
    PyObject **slots[] = {&S.span_type, &S.context_type, &S.kinds, &S.statuses, &S.sampled, &S.default_state};
    PyObject *given[] = {span_type, context_type, kinds, statuses, sampled, default_state};
    for (int i = 0; i < 6; i++) {
        Py_INCREF(given[i]);
        Py_XSETREF(*slots[i], given[i]);
    }
    S.has_is_remote = has_is_remote;
    S.is_remote = is_remote;
    Py_RETURN_NONE;
}

/* SpanContext(trace_id, span_id, is_remote, sampled, DEFAULT_TRACE_STATE) of valid ids, as
 * processor.span_context makes it: tuple.__new__(SpanContext, (..., True)). */
static PyObject *span_context(PyObject *trace_id, PyObject *span_id, int remote)
{
    PyObject *fields = PyTuple_Pack(6, trace_id, span_id, remote ? Py_True : Py_False, S.sampled, S.default_state, Py_True);
    if (fields == NULL)
        return NULL;
    PyObject *args = PyTuple_Pack(1, fields);
    Py_DECREF(fields);
    if (args == NULL)
        return NULL;
    PyObject *out = PyTuple_Type.tp_new((PyTypeObject *)S.context_type, args, NULL);
    Py_DECREF(args);
    return out;
}

static int empty_list(PyObject *v) { return PyList_CheckExact(v) && PyList_GET_SIZE(v) == 0; }

/* The span of a common item, a new reference; None (a new reference) when the item is not one;
 * NULL with an exception set. */
static PyObject *common_span(PyObject *item, PyObject *resource, PyObject *scope, PyObject *project, PyObject *project_key)
{
    if (!PyTuple_CheckExact(item) || PyTuple_GET_SIZE(item) != 14)
        Py_RETURN_NONE;
    PyObject *trace_id = PyTuple_GET_ITEM(item, 0), *span_id = PyTuple_GET_ITEM(item, 1), *parent_id = PyTuple_GET_ITEM(item, 2),
             *state = PyTuple_GET_ITEM(item, 3), *kind = PyTuple_GET_ITEM(item, 5), *flags = PyTuple_GET_ITEM(item, 8),
             *events = PyTuple_GET_ITEM(item, 10), *links = PyTuple_GET_ITEM(item, 11), *code = PyTuple_GET_ITEM(item, 12),
             *message = PyTuple_GET_ITEM(item, 13);
    if (!PyUnicode_CheckExact(state) || PyUnicode_GET_LENGTH(state) != 0 || !empty_list(events) || !empty_list(links)
        || !PyLong_CheckExact(code) || (unsigned long)PyLong_AsLong(code) > 2 || !PyUnicode_CheckExact(message)
        || PyUnicode_GET_LENGTH(message) != 0 || !PyLong_CheckExact(kind) || !PyLong_CheckExact(flags)
        || !PyLong_CheckExact(parent_id)) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    long k = PyLong_AsLong(kind);
    unsigned long long f = PyLong_AsUnsignedLongLongMask(flags);
    int has_parent = PyObject_IsTrue(parent_id);
    if (PyErr_Occurred() || has_parent < 0) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    PyObject *attributes = PyTuple_GET_ITEM(item, 9);
    if (!PyDict_CheckExact(attributes))
        Py_RETURN_NONE;
    if (project != Py_None) {
        int claims = PyDict_Contains(attributes, project_key);
        if (claims != 0) { /* a claim to check (or a question): the Python path */
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        if (PyDict_SetItem(attributes, project_key, project) < 0)
            return NULL;
    }
    PyObject *span_kind = PyTuple_GET_ITEM(S.kinds, k >= 0 && k < 6 ? k : 1);
    PyObject *ctx = span_context(trace_id, span_id, 1), *parent = NULL, *span = NULL, *fields = NULL;
    if (ctx == NULL)
        goto done;
    if (has_parent) {
        parent = span_context(trace_id, parent_id, (f & S.has_is_remote) ? (f & S.is_remote) != 0 : 0);
        if (parent == NULL)
            goto done;
    } else {
        parent = Py_NewRef(Py_None);
    }
    span = ((PyTypeObject *)S.span_type)->tp_alloc((PyTypeObject *)S.span_type, 0);
    if (span == NULL || (fields = PyObject_GenericGetDict(span, NULL)) == NULL)
        goto fail;
    PyObject *values[13] = {
        PyTuple_GET_ITEM(item, 4), ctx, span_kind, Py_None, scope, parent, PyTuple_GET_ITEM(item, 6),
        PyTuple_GET_ITEM(item, 7), attributes, events, links, resource, PyTuple_GET_ITEM(S.statuses, PyLong_AsLong(code)),
    };
    for (int i = 0; i < 13; i++)
        if (PyDict_SetItem(fields, S.k[i], values[i]) < 0)
            goto fail;
    goto done;
fail:
    Py_CLEAR(span);
done:
    Py_XDECREF(fields);
    Py_XDECREF(ctx);
    Py_XDECREF(parent);
    return span;
}

static PyObject *spans(PyObject *self, PyObject *args)
{
    PyObject *items, *resource, *scope, *out, *fallback, *project, *project_key;
    if (!PyArg_ParseTuple(args, "O!OOO!OOU", &PyList_Type, &items, &resource, &scope, &PyList_Type, &out, &fallback, &project,
                          &project_key))
        return NULL;
    if (project != Py_None && !PyUnicode_CheckExact(project)) {
        PyErr_SetString(PyExc_TypeError, "spans: project must be a str or None");
        return NULL;
    }
    if (S.span_type == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "spans: span_rules was not given");
        return NULL;
    }
    PyObject *reasons = PyList_New(0);
    if (reasons == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(items); i++) {
        PyObject *item = PyList_GET_ITEM(items, i), *made;
        if (PyUnicode_CheckExact(item)) {
            made = Py_NewRef(item);
        } else {
            Py_INCREF(item); /* held across the calls into Python */
            made = common_span(item, resource, scope, project, project_key);
            if (made == Py_None) {
                Py_DECREF(made);
                made = PyObject_CallOneArg(fallback, item);
            }
            Py_DECREF(item);
        }
        if (made == NULL || PyList_Append(PyUnicode_Check(made) ? reasons : out, made) < 0) {
            Py_XDECREF(made);
            Py_DECREF(reasons);
            return NULL;
        }
        Py_DECREF(made);
    }
    return reasons;
}

/* --- owners: what ownership reads of each span, on the wire -----------------------------------
 *
 * owners(data, project_key, run_key, token_project)
 *     -> [((i, j, k), trace id hex, run id | None, the project it writes)] | None
 *
 * What collector/_ownership.Ownership.decide reads of each span sent with token_project's token
 * (str, or None for a token bound to no project), as _ownership.spans_of reads it of the parsed
 * request: its position (resource, scope, span index), its trace id in hex (a span whose trace
 * id is not 16 bytes is left out: the check refuses it), its run id, and the project it writes -
 * the token's, else the first value of project_key in its attributes, else in its resource's,
 * else "". A value is read as text: a string as it is ("" as none), an int or a double as str()
 * writes it, a bool as "True"/"False". None when a span claims a project other than the token's
 * (the check's rejection is protobuf's and Python's to count), and whenever the two readers could
 * differ or the walk is not sure: a value of one of the keys that is an array, a key-value list,
 * bytes or nothing, or a string past 65536 characters (check cuts there); protobuf then parses
 * the request and Python reads it. For bytes scan() accepted (its walk is not made again: a
 * request it was not sure of may read differently here). Spans of one trace share one trace id
 * string. tests/test_otlpscan.py holds it to the Python reading.
 */

#define CLAIM_MAX 65536

typedef struct {
    const char *project, *run;
    Py_ssize_t project_len, run_len;
    int odd; /* a value the two Python readers may read differently: ask protobuf */
} owner_keys;

/* The text of an AnyValue as ownership reads it: a new reference, Py_None for "", NULL with
 * keys->odd set (no error) for a value it does not read, NULL with an error on failure. */
static PyObject *owner_text(cursor c, owner_keys *keys)
{
    uint32_t number;
    int wt;
    uint64_t v;
    cursor sub;
    if (next_field(&c, &number, &wt) != 0) {
        keys->odd = 1;
        return NULL;
    }
    PyObject *value = NULL;
    if (number == 1 && wt == WT_LEN && length_delimited(&c, &sub) == 0) {
        if (sub.end == sub.p)
            Py_RETURN_NONE;
        value = text(sub, -1);
        if (value != NULL && PyUnicode_GET_LENGTH(value) > CLAIM_MAX) {
            Py_DECREF(value);
            keys->odd = 1;
            return NULL;
        }
        return value;
    }
    if (number == 2 && wt == WT_VARINT && varint(&c, &v) == 0)
        return PyUnicode_FromString(v ? "True" : "False");
    if (number == 3 && wt == WT_VARINT && varint(&c, &v) == 0)
        value = PyLong_FromLongLong((long long)(int64_t)v);
    else if (number == 4 && wt == WT_I64 && fixed64(&c, &v) == 0) {
        double d;
        memcpy(&d, &v, sizeof d);
        value = PyFloat_FromDouble(d);
    } else {
        keys->odd = 1;
        return NULL;
    }
    if (value == NULL)
        return NULL;
    PyObject *out = PyObject_Str(value);
    Py_DECREF(value);
    return out;
}

/* The first values of the two keys among the KeyValues of repeated field `field` of c, into
 * *project and *run (new references, or left NULL when absent); -1 on failure or oddness. */
static int owner_attributes(cursor c, uint32_t field, owner_keys *keys, PyObject **project, PyObject **run)
{
    uint32_t number, n;
    int wt;
    while (next_field(&c, &number, &wt) == 0) {
        cursor kv, k = {c.p, c.p}, v = {c.p, c.p}, sub;
        if (number != field || wt != WT_LEN) {
            if (skip(&c, wt) < 0)
                return -1;
            continue;
        }
        if (length_delimited(&c, &kv) < 0)
            return -1;
        int has_value = 0;
        while (next_field(&kv, &n, &wt) == 0) {
            if (wt != WT_LEN || length_delimited(&kv, &sub) < 0)
                return -1;
            if (n == 1)
                k = sub;
            else if (n == 2)
                v = sub, has_value = 1;
        }
        Py_ssize_t len = k.end - k.p;
        PyObject **into = NULL;
        if (len == keys->project_len && memcmp(k.p, keys->project, (size_t)len) == 0)
            into = project;
        else if (len == keys->run_len && memcmp(k.p, keys->run, (size_t)len) == 0)
            into = run;
        if (into == NULL || *into != NULL)
            continue; /* another key, or one already read: the first of each counts */
        if (!has_value) {
            keys->odd = 1;
            return -1;
        }
        if ((*into = owner_text(v, keys)) == NULL)
            return -1;
    }
    return 0;
}

/* The next message of repeated field `number` of c into *out: 1, or 0 at the end, -1 when broken. */
static int next_message(cursor *c, uint32_t number, cursor *out)
{
    uint32_t k;
    int wt;
    while (next_field(c, &k, &wt) == 0) {
        if (k == number && wt == WT_LEN)
            return length_delimited(c, out) < 0 ? -1 : 1;
        if (skip(c, wt) < 0)
            return -1;
    }
    return 0;
}

static PyObject *owners(PyObject *self, PyObject *args)
{
    Py_buffer data;
    owner_keys keys = {0};
    PyObject *token;
    if (!PyArg_ParseTuple(args, "y*s#s#O", &data, &keys.project, &keys.project_len, &keys.run, &keys.run_len, &token))
        return NULL;
    if (token != Py_None && !PyUnicode_Check(token)) {
        PyBuffer_Release(&data);
        PyErr_SetString(PyExc_TypeError, "token_project must be a str or None");
        return NULL;
    }
    cursor c = {(const uint8_t *)data.buf, (const uint8_t *)data.buf + data.len};
    /* What a span writes when it claims nothing (or the token's own project). */
    PyObject *empty = PyUnicode_FromStringAndSize("", 0);
    PyObject *out = PyList_New(0), *resource_project = NULL, *last_trace = NULL;
    const uint8_t *last_id = NULL;
    cursor rs, ss, span;
    int more;
    if (empty == NULL)
        goto fail;
    for (Py_ssize_t i = 0; out != NULL && (more = next_message(&c, 1, &rs)) != 0; i++) {
        PyObject *ignored = NULL;
        Py_CLEAR(resource_project);
        if (more < 0 || owner_attributes(one(rs, 1), 1, &keys, &resource_project, &ignored) < 0)
            goto fail;
        Py_CLEAR(ignored); /* a run id on a resource names no span's run */
        for (Py_ssize_t j = 0; (more = next_message(&rs, 2, &ss)) != 0; j++) {
            if (more < 0)
                goto fail;
            for (Py_ssize_t k = 0; (more = next_message(&ss, 2, &span)) != 0; k++) {
                PyObject *project = NULL, *run = NULL, *trace = NULL;
                cursor id = one(span, 1);
                if (more < 0 || owner_attributes(span, 9, &keys, &project, &run) < 0) {
                    Py_XDECREF(project);
                    Py_XDECREF(run);
                    goto fail;
                }
                PyObject *claimed = project != NULL && project != Py_None ? project
                                  : resource_project != NULL && resource_project != Py_None ? resource_project : NULL;
                if (token != Py_None && claimed != NULL) {
                    int same = PyUnicode_Compare(claimed, token);
                    if (same != 0) { /* another project claimed (or an error): Python decides */
                        Py_XDECREF(project);
                        Py_XDECREF(run);
                        if (same == -1 && PyErr_Occurred())
                            goto fail;
                        keys.odd = 1;
                        goto fail;
                    }
                }
                if (id.end - id.p != 16) { /* refused by the check: not read for ownership */
                    Py_XDECREF(project);
                    Py_XDECREF(run);
                    continue;
                }
                if (last_id != NULL && memcmp(last_id, id.p, 16) == 0)
                    trace = Py_NewRef(last_trace);
                else if ((trace = hex(id, 16)) != NULL) {
                    Py_XSETREF(last_trace, Py_NewRef(trace));
                    last_id = id.p;
                } else {
                    Py_XDECREF(project);
                    Py_XDECREF(run);
                    goto fail;
                }
                PyObject *writes = token != Py_None && PyUnicode_GET_LENGTH(token) > 0 ? token : claimed != NULL ? claimed : empty;
                if (run == NULL)
                    run = Py_NewRef(Py_None);
                PyObject *item = PyTuple_New(4), *at = Py_BuildValue("(nnn)", i, j, k);
                if (item == NULL || at == NULL) {
                    Py_XDECREF(item);
                    Py_XDECREF(at);
                    Py_DECREF(trace);
                    Py_DECREF(run);
                    Py_XDECREF(project);
                    goto fail;
                }
                PyTuple_SET_ITEM(item, 0, at);
                PyTuple_SET_ITEM(item, 1, trace);
                PyTuple_SET_ITEM(item, 2, run);
                PyTuple_SET_ITEM(item, 3, Py_NewRef(writes));
                Py_XDECREF(project);
                if (PyList_Append(out, item) < 0) {
                    Py_XDECREF(item);
                    goto fail;
                }
                Py_DECREF(item);
            }
        }
    }
    Py_XDECREF(resource_project);
    Py_XDECREF(last_trace);
    Py_DECREF(empty);
    PyBuffer_Release(&data);
    return out;
fail:
    Py_XDECREF(resource_project);
    Py_XDECREF(last_trace);
    Py_XDECREF(empty);
    Py_XDECREF(out);
    PyBuffer_Release(&data);
    if (keys.odd || !PyErr_Occurred()) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    return NULL;
}

/* --- Python ---------------------------------------------------------------------------------- */

static PyObject *scan(PyObject *self, PyObject *args)
{
    Py_buffer data;
    long long oldest_ns;
    scan_state st;
    int r;

    if (!PyArg_ParseTuple(args, "y*L", &data, &oldest_ns))
        return NULL;
    memset(&st, 0, sizeof st);
    st.oldest_ns = oldest_ns;
    Py_BEGIN_ALLOW_THREADS
    cursor c = {(const uint8_t *)data.buf, (const uint8_t *)data.buf + data.len};
    r = walk(&c, &REQUEST, 0, NULL, &st);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    if (r < 0)
        Py_RETURN_NONE;

    PyObject *reasons = PyDict_New();
    if (!reasons)
        return NULL;
    for (int i = 0; i < R_COUNT; i++) {
        if (!st.reasons[i])
            continue;
        PyObject *n = PyLong_FromLongLong(st.reasons[i]);
        if (!n || PyDict_SetItemString(reasons, REASON_NAMES[i], n) < 0) {
            Py_XDECREF(n);
            Py_DECREF(reasons);
            return NULL;
        }
        Py_DECREF(n);
    }
    return Py_BuildValue("(LN)", st.accepted, reasons);
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS,
     "scan(data, oldest_ns) -> (accepted, {reason: count}), or None when protobuf must decide"},
    {"decode", decode, METH_VARARGS,
     "decode(data, oldest_ns, max_attributes, max_value_length, max_events, max_links, max_array_items, shard_index, "
     "shard_count) -> ([(resource attributes, schema url, [(scope name, version, schema url, [span])])], dropped) | None"},
    {"owners", owners, METH_VARARGS,
     "owners(data, project_key, run_key, token_project) -> [((resource, scope, span index), trace id hex, run id, "
     "the project it writes)] | None"},
    {"span_rules", span_rules, METH_VARARGS,
     "span_rules(ReadableSpan, SpanContext, kinds, statuses, sampled, default_state, has_is_remote, is_remote)"},
    {"spans", spans, METH_VARARGS,
     "spans(items, resource, scope, out, fallback, project, project_key) -> [reason of each span refused]"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_otlpscan", "The receiver's check of an OTLP trace request, on its bytes.", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__otlpscan(void)
{
    return PyModule_Create(&module);
}
