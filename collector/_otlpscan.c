/* The receiver's check, on the wire: an OTLP ExportTraceServiceRequest's bytes walked once, in C,
 * without building a Python object per field.
 *
 * scan(data, oldest_ns) -> (accepted, {reason: count}) | None
 *
 * It answers what collector/_convert.check answers (without a project) for the request protobuf
 * would parse into - the same spans accepted, the same reasons counted - or None whenever it is not
 * sure the request is an ordinary one: a field it does not know, a wire type other than the
 * schema's, a singular field given twice, a oneof given two members, nesting past 24 values deep, a
 * string that is not valid UTF-8, anything truncated. None sends the request down the Python path
 * (protobuf's parser, then check), which gives the exact error or answer.
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
#define MAX_VALUE_DEPTH 24

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

/* A singular field given twice is merged or overwritten by protobuf: not an ordinary request. */
#define ONCE(seen, field)                         \
    do {                                          \
        if ((seen) & (1u << (field)))             \
            return UNSURE;                        \
        (seen) |= 1u << (field);                  \
    } while (0)

/* --- the schema (opentelemetry-proto's common, resource and trace messages) ------------------ */

static int key_value(cursor *c, int depth);

/* AnyValue: a oneof of string, bool, int, double, array, key-value list and bytes. */
static int any_value(cursor *c, int depth)
{
    uint32_t field, seen = 0;
    int wt, r, kind = 0;
    uint64_t v;
    cursor sub;
    if (depth > MAX_VALUE_DEPTH)
        return UNSURE;
    while ((r = next_field(c, &field, &wt)) == 0) {
        if (field > 7)
            return UNSURE;
        if (kind)
            return UNSURE; /* a oneof given twice: the last wins in protobuf */
        ONCE(seen, field);
        kind = (int)field;
        switch (field) {
        case 1: /* string_value */
            if (wt != WT_LEN || string_field(c, &sub) < 0)
                return UNSURE;
            break;
        case 2: /* bool_value */
        case 3: /* int_value */
            if (wt != WT_VARINT || varint(c, &v) < 0)
                return UNSURE;
            break;
        case 4: /* double_value */
            if (wt != WT_I64 || fixed64(c, &v) < 0)
                return UNSURE;
            break;
        case 5: /* array_value: ArrayValue { repeated AnyValue values = 1; } */
        case 6: /* kvlist_value: KeyValueList { repeated KeyValue values = 1; } */
            if (wt != WT_LEN || length_delimited(c, &sub) < 0)
                return UNSURE;
            {
                uint32_t f2;
                int wt2, r2;
                cursor item;
                while ((r2 = next_field(&sub, &f2, &wt2)) == 0) {
                    if (f2 != 1 || wt2 != WT_LEN || length_delimited(&sub, &item) < 0)
                        return UNSURE;
                    if ((field == 5 ? any_value(&item, depth + 1) : key_value(&item, depth + 1)) < 0)
                        return UNSURE;
                }
                if (r2 < 0)
                    return UNSURE;
            }
            break;
        case 7: /* bytes_value */
            if (wt != WT_LEN || length_delimited(c, &sub) < 0)
                return UNSURE;
            break;
        default:
            return UNSURE;
        }
    }
    return r < 0 ? UNSURE : 0;
}

/* KeyValue { string key = 1; AnyValue value = 2; } */
static int key_value(cursor *c, int depth)
{
    uint32_t field, seen = 0;
    int wt, r;
    cursor sub;
    while ((r = next_field(c, &field, &wt)) == 0) {
        if (field == 1) {
            ONCE(seen, 1);
            if (wt != WT_LEN || string_field(c, &sub) < 0)
                return UNSURE;
        } else if (field == 2) {
            ONCE(seen, 2);
            if (wt != WT_LEN || length_delimited(c, &sub) < 0 || any_value(&sub, depth + 1) < 0)
                return UNSURE;
        } else {
            return UNSURE;
        }
    }
    return r < 0 ? UNSURE : 0;
}

/* One element of a repeated KeyValue attributes field. */
static int attribute(cursor *c, int wt)
{
    cursor sub;
    if (wt != WT_LEN || length_delimited(c, &sub) < 0)
        return UNSURE;
    return key_value(&sub, 0);
}

static int count_field(cursor *c, int wt)
{
    uint64_t v;
    return wt == WT_VARINT ? varint(c, &v) : UNSURE;
}

/* Resource { repeated KeyValue attributes = 1; uint32 dropped_attributes_count = 2; } */
static int resource(cursor *c)
{
    uint32_t field, seen = 0;
    int wt, r;
    while ((r = next_field(c, &field, &wt)) == 0) {
        if (field == 1) {
            if (attribute(c, wt) < 0)
                return UNSURE;
        } else if (field == 2) {
            ONCE(seen, 2);
            if (count_field(c, wt) < 0)
                return UNSURE;
        } else {
            return UNSURE; /* entity_refs and later fields: protobuf's to read */
        }
    }
    return r < 0 ? UNSURE : 0;
}

/* InstrumentationScope { string name = 1; string version = 2; repeated KeyValue attributes = 3; uint32 dropped = 4; } */
static int scope(cursor *c)
{
    uint32_t field, seen = 0;
    int wt, r;
    cursor s;
    while ((r = next_field(c, &field, &wt)) == 0) {
        switch (field) {
        case 1:
        case 2:
            ONCE(seen, field);
            if (wt != WT_LEN || string_field(c, &s) < 0)
                return UNSURE;
            break;
        case 3:
            if (attribute(c, wt) < 0)
                return UNSURE;
            break;
        case 4:
            ONCE(seen, 4);
            if (count_field(c, wt) < 0)
                return UNSURE;
            break;
        default:
            return UNSURE;
        }
    }
    return r < 0 ? UNSURE : 0;
}

/* Span.Event { fixed64 time_unix_nano = 1; string name = 2; repeated KeyValue attributes = 3; uint32 dropped = 4; } */
static int event(cursor *c)
{
    uint32_t field, seen = 0;
    int wt, r;
    uint64_t v;
    cursor s;
    while ((r = next_field(c, &field, &wt)) == 0) {
        switch (field) {
        case 1:
            ONCE(seen, 1);
            if (wt != WT_I64 || fixed64(c, &v) < 0)
                return UNSURE;
            break;
        case 2:
            ONCE(seen, 2);
            if (wt != WT_LEN || string_field(c, &s) < 0)
                return UNSURE;
            break;
        case 3:
            if (attribute(c, wt) < 0)
                return UNSURE;
            break;
        case 4:
            ONCE(seen, 4);
            if (count_field(c, wt) < 0)
                return UNSURE;
            break;
        default:
            return UNSURE;
        }
    }
    return r < 0 ? UNSURE : 0;
}

/* Span.Link { bytes trace_id = 1; bytes span_id = 2; string trace_state = 3; repeated KeyValue attributes = 4;
 *             uint32 dropped_attributes_count = 5; fixed32 flags = 6; } */
static int span_link(cursor *c)
{
    uint32_t field, seen = 0;
    int wt, r;
    cursor s;
    while ((r = next_field(c, &field, &wt)) == 0) {
        switch (field) {
        case 1:
        case 2:
            ONCE(seen, field);
            if (wt != WT_LEN || length_delimited(c, &s) < 0)
                return UNSURE;
            break;
        case 3:
            ONCE(seen, 3);
            if (wt != WT_LEN || string_field(c, &s) < 0)
                return UNSURE;
            break;
        case 4:
            if (attribute(c, wt) < 0)
                return UNSURE;
            break;
        case 5:
            ONCE(seen, 5);
            if (count_field(c, wt) < 0)
                return UNSURE;
            break;
        case 6:
            ONCE(seen, 6);
            if (wt != WT_I32 || fixed32(c) < 0)
                return UNSURE;
            break;
        default:
            return UNSURE;
        }
    }
    return r < 0 ? UNSURE : 0;
}

/* Status { reserved 1; string message = 2; StatusCode code = 3; } */
static int status(cursor *c)
{
    uint32_t field, seen = 0;
    int wt, r;
    cursor s;
    while ((r = next_field(c, &field, &wt)) == 0) {
        if (field == 2) {
            ONCE(seen, 2);
            if (wt != WT_LEN || string_field(c, &s) < 0)
                return UNSURE;
        } else if (field == 3) {
            ONCE(seen, 3);
            if (count_field(c, wt) < 0)
                return UNSURE;
        } else {
            return UNSURE;
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

/* Span: walked whole, then judged as _convert._problem judges it. */
static int span(cursor *c, scan_state *st)
{
    uint32_t field, seen = 0;
    int wt, r;
    uint64_t start = 0, end = 0;
    cursor trace_id = {NULL, NULL}, span_id = {NULL, NULL}, parent = {NULL, NULL}, name = {NULL, NULL}, s, sub;
    while ((r = next_field(c, &field, &wt)) == 0) {
        switch (field) {
        case 1:
        case 2:
        case 4:
            ONCE(seen, field);
            if (wt != WT_LEN || length_delimited(c, field == 1 ? &trace_id : field == 2 ? &span_id : &parent) < 0)
                return UNSURE;
            break;
        case 3: /* trace_state */
            ONCE(seen, 3);
            if (wt != WT_LEN || string_field(c, &s) < 0)
                return UNSURE;
            break;
        case 5:
            ONCE(seen, 5);
            if (wt != WT_LEN || string_field(c, &name) < 0)
                return UNSURE;
            break;
        case 6: /* kind */
        case 10: /* dropped_attributes_count */
        case 12: /* dropped_events_count */
        case 14: /* dropped_links_count */
            ONCE(seen, field);
            if (count_field(c, wt) < 0)
                return UNSURE;
            break;
        case 7:
        case 8:
            ONCE(seen, field);
            if (wt != WT_I64 || fixed64(c, field == 7 ? &start : &end) < 0)
                return UNSURE;
            break;
        case 9:
            if (attribute(c, wt) < 0)
                return UNSURE;
            break;
        case 11:
        case 13:
            if (wt != WT_LEN || length_delimited(c, &sub) < 0 || (field == 11 ? event(&sub) : span_link(&sub)) < 0)
                return UNSURE;
            break;
        case 15:
            ONCE(seen, 15);
            if (wt != WT_LEN || length_delimited(c, &sub) < 0 || status(&sub) < 0)
                return UNSURE;
            break;
        case 16: /* flags */
            ONCE(seen, 16);
            if (wt != WT_I32 || fixed32(c) < 0)
                return UNSURE;
            break;
        default:
            return UNSURE;
        }
    }
    if (r < 0)
        return UNSURE;

    int problem = -1;
    if (!trace_id.p || trace_id.end - trace_id.p != 16 || all_zero(trace_id.p, 16))
        problem = R_BAD_TRACE_ID;
    else if (!span_id.p || span_id.end - span_id.p != 8 || all_zero(span_id.p, 8))
        problem = R_BAD_SPAN_ID;
    else if (parent.p && parent.end != parent.p && parent.end - parent.p != 8)
        problem = R_BAD_PARENT_SPAN_ID;
    else if (!name.p || name.end == name.p)
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

/* ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; string schema_url = 3; } */
static int scope_spans(cursor *c, scan_state *st)
{
    uint32_t field, seen = 0;
    int wt, r;
    cursor sub;
    while ((r = next_field(c, &field, &wt)) == 0) {
        if (field == 1) {
            ONCE(seen, 1);
            if (wt != WT_LEN || length_delimited(c, &sub) < 0 || scope(&sub) < 0)
                return UNSURE;
        } else if (field == 2) {
            if (wt != WT_LEN || length_delimited(c, &sub) < 0 || span(&sub, st) < 0)
                return UNSURE;
        } else if (field == 3) {
            ONCE(seen, 3);
            if (wt != WT_LEN || string_field(c, &sub) < 0)
                return UNSURE;
        } else {
            return UNSURE;
        }
    }
    return r < 0 ? UNSURE : 0;
}

/* ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; string schema_url = 3; } */
static int resource_spans(cursor *c, scan_state *st)
{
    uint32_t field, seen = 0;
    int wt, r;
    cursor sub;
    while ((r = next_field(c, &field, &wt)) == 0) {
        if (field == 1) {
            ONCE(seen, 1);
            if (wt != WT_LEN || length_delimited(c, &sub) < 0 || resource(&sub) < 0)
                return UNSURE;
        } else if (field == 2) {
            if (wt != WT_LEN || length_delimited(c, &sub) < 0 || scope_spans(&sub, st) < 0)
                return UNSURE;
        } else if (field == 3) {
            ONCE(seen, 3);
            if (wt != WT_LEN || string_field(c, &sub) < 0)
                return UNSURE;
        } else {
            return UNSURE;
        }
    }
    return r < 0 ? UNSURE : 0;
}

/* ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; } */
static int request(cursor *c, scan_state *st)
{
    uint32_t field;
    int wt, r;
    cursor sub;
    while ((r = next_field(c, &field, &wt)) == 0) {
        if (field != 1 || wt != WT_LEN || length_delimited(c, &sub) < 0 || resource_spans(&sub, st) < 0)
            return UNSURE;
    }
    return r < 0 ? UNSURE : 0;
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
    r = request(&c, &st);
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
