/* The receiver's check, on the wire: an OTLP ExportTraceServiceRequest's bytes walked once, in C,
 * without building a Python object per field.
 *
 * scan(data, oldest_ns) -> (accepted, {reason: count}) | None
 *
 * It answers what collector/_convert.check answers (without a project) for the request protobuf
 * would parse into - the same spans accepted, the same reasons counted - or None whenever it is not
 * sure the request is an ordinary one: a field it does not know, a wire type other than the
 * schema's, a singular field given twice, a oneof given two members, an attribute value nested past
 * 48 messages deep, a string that is not valid UTF-8, anything truncated. None sends the request
 * down the Python path (protobuf's parser, then check), which gives the exact error or answer.
 *
 * So a request this accepts is one protobuf parses: the workers read it back from the log with
 * protobuf, and nothing acknowledged may fail there. tests/test_otlpscan.py holds the two to that
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

/* A span: walked whole, then judged as _convert._problem judges it. */
static int span(cursor *c, scan_state *st)
{
    slot f[sizeof(SPAN_FIELDS) / sizeof(SPAN_FIELDS[0])];
    memset(f, 0, sizeof f);
    if (walk(c, &SPAN, 0, f, st) < 0)
        return UNSURE;
    uint64_t start = f[SPAN_START].value, end = f[SPAN_END].value;
    int problem = -1;
    if (length(&f[SPAN_TRACE_ID]) != 16 || all_zero(f[SPAN_TRACE_ID].bytes.p, 16))
        problem = R_BAD_TRACE_ID;
    else if (length(&f[SPAN_SPAN_ID]) != 8 || all_zero(f[SPAN_SPAN_ID].bytes.p, 8))
        problem = R_BAD_SPAN_ID;
    else if (length(&f[SPAN_PARENT]) != 0 && length(&f[SPAN_PARENT]) != 8)
        problem = R_BAD_PARENT_SPAN_ID;
    else if (length(&f[SPAN_NAME]) == 0)
        problem = R_EMPTY_NAME;
    else if (!start || end < start || end > MAX_NS)
        problem = R_BAD_TIMES;
    else if (st->oldest_ns > 0 && start < (uint64_t)st->oldest_ns)
        problem = R_TOO_OLD;
    if (problem < 0)
        st->accepted++;
    else
        st->reasons[problem]++;
    return 0;
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
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_otlpscan", "The receiver's check of an OTLP trace request, on its bytes.", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__otlpscan(void)
{
    return PyModule_Create(&module);
}
