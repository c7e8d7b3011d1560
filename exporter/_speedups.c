/* The row builder's hottest code in C: a span's attributes as the Map(String, String) column holds
 * them, and a plain span's whole otel_traces row.
 *
 * attr_map(attrs, text, stringify) -> {str: str}
 *
 * The same dict exporter/_rows.py's attr_map builds, read in C: a key and a value that are both
 * ASCII str go in as they are, a bool as "true"/"false", an int or a float as its repr(), a
 * tuple or list of plain ASCII strings as compact JSON (what orjson writes for it); any other key
 * or value (non-ASCII text, which may hold lone surrogates; bytes, sequences, objects)
 * is handed to the Python functions given, text(key) and stringify(value), so the rules stay
 * written in one place. attrs must be a dict (the caller sends any other mapping down the Python
 * path). tests/test_rows.py holds the two to the same maps on every kind of value.
 *
 * trace_row(fields) -> list | None
 *
 * exporter/_rows.py's trace_row of an SDK span given by its fields (its __dict__, where
 * runmeter.processor.span_fields says they can be read), after row_rules(...) gave the rules it
 * shares with the Python path. Only the common span: no events, no links, times DateTime64(9)
 * holds, ids of their sizes; None for any other span (and for anything not shaped as expected),
 * which the Python path then builds - or refuses, with its reasons. Non-ASCII names go through
 * text(), the resource through _resource(), a status message through _rows' own redaction, a
 * trace state through its to_header().
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static PyObject *TRUE_TEXT;
static PyObject *FALSE_TEXT;

/* A tuple or list of ASCII strings with nothing JSON escapes (no quote, backslash or control
 * character) as compact JSON, the common array (finish reasons, stop sequences); NULL, with no
 * exception set, for any other array: the Python path writes it. */
static PyObject *plain_array(PyObject *value)
{
    Py_ssize_t n = PySequence_Fast_GET_SIZE(value), size = 2 + (n > 1 ? n - 1 : 0);
    PyObject **items = PySequence_Fast_ITEMS(value);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = items[i];
        if (Py_TYPE(item) != &PyUnicode_Type || !PyUnicode_IS_ASCII(item))
            return NULL;
        const Py_UCS1 *c = PyUnicode_1BYTE_DATA(item);
        Py_ssize_t len = PyUnicode_GET_LENGTH(item);
        for (Py_ssize_t j = 0; j < len; j++)
            if (c[j] < 0x20 || c[j] == '"' || c[j] == '\\' || c[j] == 0x7f)
                return NULL;
        size += len + 2;
    }
    PyObject *out = PyUnicode_New(size, 127);
    if (out == NULL)
        return NULL;
    Py_UCS1 *w = PyUnicode_1BYTE_DATA(out);
    *w++ = '[';
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i)
            *w++ = ',';
        *w++ = '"';
        Py_ssize_t len = PyUnicode_GET_LENGTH(items[i]);
        memcpy(w, PyUnicode_1BYTE_DATA(items[i]), len);
        w += len;
        *w++ = '"';
    }
    *w = ']';
    return out;
}

/* The stored form of a value, a new reference; NULL with an exception set. */
static PyObject *stored(PyObject *value, PyObject *stringify)
{
    PyTypeObject *t = Py_TYPE(value);
    if (t == &PyUnicode_Type && PyUnicode_IS_ASCII(value)) {
        Py_INCREF(value);
        return value;
    }
    if (t == &PyBool_Type) {
        PyObject *out = value == Py_True ? TRUE_TEXT : FALSE_TEXT;
        Py_INCREF(out);
        return out;
    }
    if (t == &PyLong_Type || t == &PyFloat_Type)
        return PyObject_Repr(value); /* what repr() gives: the Python path's rule for both */
    if (t == &PyTuple_Type || t == &PyList_Type) {
        PyObject *out = plain_array(value);
        if (out != NULL || PyErr_Occurred())
            return out;
    }
    return PyObject_CallOneArg(stringify, value);
}

/* The map of a dict of attributes, a new reference; NULL with an exception set. */
static PyObject *build_map(PyObject *attrs, PyObject *text, PyObject *stringify)
{
    PyObject *out = PyDict_New();
    if (out == NULL)
        return NULL;
    Py_ssize_t pos = 0;
    PyObject *key, *value;
    while (PyDict_Next(attrs, &pos, &key, &value)) {
        /* Held across the calls into Python below, which could change attrs. */
        Py_INCREF(key);
        Py_INCREF(value);
        /* The value first, then the key: the order Python's out[text(k)] = stringify(v) takes. */
        PyObject *v = stored(value, stringify), *k = NULL;
        if (v != NULL && Py_TYPE(key) == &PyUnicode_Type && PyUnicode_IS_ASCII(key)) {
            Py_INCREF(key);
            k = key;
        } else if (v != NULL) {
            k = PyObject_CallOneArg(text, key);
        }
        int failed = k == NULL || PyDict_SetItem(out, k, v) < 0;
        Py_XDECREF(k);
        Py_XDECREF(v);
        Py_DECREF(key);
        Py_DECREF(value);
        if (failed) {
            Py_DECREF(out);
            return NULL;
        }
    }
    return out;
}

static PyObject *attr_map(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "attr_map(attrs, text, stringify)");
        return NULL;
    }
    if (!PyDict_CheckExact(args[0])) {
        PyErr_SetString(PyExc_TypeError, "attr_map: attrs must be a dict");
        return NULL;
    }
    return build_map(args[0], args[1], args[2]);
}

/* What row_rules() was given (owned references), or NULL before it was called. */
static struct {
    PyObject *text, *stringify, *resource;        /* _rows.text, _rows.stringify, _rows._resource */
    PyObject *status_text;                        /* _rows._status_message */
    PyObject *kinds, *statuses;                   /* ((member, name), ...): SpanKind, StatusCode */
    PyObject *no_events, *no_links;               /* the shared empty columns, 3 and 4 lists */
    PyObject *context_type, *default_state;       /* SpanContext, DEFAULT_TRACE_STATE */
    /* made at import: */
    PyObject *empty, *unspecified, *unset, *sixty_four, *to_header;
    PyObject *k_name, *k_context, *k_parent, *k_start, *k_end, *k_resource, *k_scope, *k_events, *k_links, *k_attributes,
        *k_kind, *k_status, *k_inner, *k_status_code, *k_description, *k_name_public, *k_version;
} R;

static PyObject *row_rules(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 10 || !PyTuple_CheckExact(args[3]) || !PyTuple_CheckExact(args[4]) || !PyTuple_CheckExact(args[5])
        || PyTuple_GET_SIZE(args[5]) != 3 || !PyTuple_CheckExact(args[6]) || PyTuple_GET_SIZE(args[6]) != 4
        || !PyType_Check(args[7])) {
        PyErr_SetString(PyExc_TypeError, "row_rules(text, stringify, resource, kinds, statuses, no_events, no_links, "
                                         "SpanContext, DEFAULT_TRACE_STATE, status_text)");
        return NULL;
    }
    PyObject **slots[] = {&R.text, &R.stringify, &R.resource, &R.kinds, &R.statuses, &R.no_events, &R.no_links,
                          &R.context_type, &R.default_state, &R.status_text};
    for (Py_ssize_t i = 0; i < nargs; i++) {
        Py_INCREF(args[i]);
        Py_XSETREF(*slots[i], args[i]);
    }
    Py_RETURN_NONE;
}

/* The name paired with member in rules ((member, name), ...), borrowed; fallback when none is. */
static PyObject *named(PyObject *rules, PyObject *member, PyObject *fallback)
{
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(rules); i++) {
        PyObject *pair = PyTuple_GET_ITEM(rules, i);
        if (PyTuple_GET_ITEM(pair, 0) == member)
            return PyTuple_GET_ITEM(pair, 1);
    }
    return fallback;
}

static const char HEX[] = "0123456789abcdef";

/* v as `digits` lowercase hex digits (16 or 32), as f"{v:0{digits}x}" writes an int below
 * 2**(4*digits); NULL, with no exception set, for anything else. */
static PyObject *hex_id(PyObject *v, int digits)
{
    if (!PyLong_CheckExact(v))
        return NULL;
    unsigned long long high = 0, low;
    if (digits == 32) {
        PyObject *shifted = PyNumber_Rshift(v, R.sixty_four);
        if (shifted == NULL) {
            PyErr_Clear();
            return NULL;
        }
        high = PyLong_AsUnsignedLongLong(shifted);
        Py_DECREF(shifted);
        low = PyLong_AsUnsignedLongLongMask(v);
    } else {
        low = PyLong_AsUnsignedLongLong(v);
    }
    if (PyErr_Occurred()) { /* negative, or past the size */
        PyErr_Clear();
        return NULL;
    }
    PyObject *out = PyUnicode_New(digits, 127);
    if (out == NULL) {
        PyErr_Clear();
        return NULL;
    }
    Py_UCS1 *w = PyUnicode_1BYTE_DATA(out) + digits;
    for (int i = 0; i < 16; i++, low >>= 4)
        *--w = HEX[low & 0xf];
    for (int i = 16; i < digits; i++, high >>= 4)
        *--w = HEX[high & 0xf];
    return out;
}

/* A time DateTime64(9) holds (0 ..= 2**63 - 1 ns), into *ns; 0 for anything else. */
static int stored_time(PyObject *v, long long *ns)
{
    if (!PyLong_CheckExact(v))
        return 0;
    int overflow = 0;
    *ns = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (*ns == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    return !overflow && *ns >= 0;
}

/* Text as the column holds it, a new reference: ASCII as it is, anything else through text(). */
static PyObject *column_text(PyObject *v)
{
    if (Py_TYPE(v) == &PyUnicode_Type && PyUnicode_IS_ASCII(v)) {
        Py_INCREF(v);
        return v;
    }
    return PyObject_CallOneArg(R.text, v);
}

/* An empty events or links field: None, an empty tuple or list, or a sequence of length 0. */
static int nothing_in(PyObject *v)
{
    if (v == Py_None)
        return 1;
    if (PyTuple_CheckExact(v))
        return PyTuple_GET_SIZE(v) == 0;
    if (PyList_CheckExact(v))
        return PyList_GET_SIZE(v) == 0;
    int truth = PyObject_IsTrue(v);
    if (truth < 0)
        PyErr_Clear();
    return truth == 0;
}

#define FIELD(name) (PyDict_GetItemWithError(fields, name))

/* The row of these fields (held by the caller for the whole call: the calls into Python below
 * cannot take them away); None when the Python path is to build it. */
static PyObject *row_of(PyObject *name, PyObject *ctx, PyObject *parent, PyObject *start, PyObject *end, PyObject *resource,
                        PyObject *scope, PyObject *events, PyObject *links, PyObject *attrs, PyObject *kind, PyObject *status)
{
    PyObject *row = NULL, *items[22] = {NULL};
    if (!nothing_in(events) || !nothing_in(links))
        Py_RETURN_NONE;
    /* start = span.start_time or 0; end = span.end_time or start */
    long long start_ns = 0, end_ns;
    if (start != Py_None && !stored_time(start, &start_ns))
        Py_RETURN_NONE;
    if (end == Py_None || (PyLong_CheckExact(end) && PyObject_Not(end) == 1))
        end_ns = start_ns;
    else if (!stored_time(end, &end_ns))
        Py_RETURN_NONE;
    if (!PyDict_CheckExact(attrs)) { /* the SDK's BoundedAttributes: its inner dict (processor.attributes_of) */
        PyObject *inner = PyObject_GetAttr(attrs, R.k_inner);
        if (inner == NULL || !PyDict_CheckExact(inner)) {
            PyErr_Clear();
            Py_XDECREF(inner);
            Py_RETURN_NONE;
        }
        attrs = inner;
    } else {
        Py_INCREF(attrs);
    }
    PyObject *code = NULL, *message = NULL, *scope_name = NULL, *scope_version = NULL, *named_status;
    if (status == Py_None)
        goto fallback;
    code = PyObject_GetAttr(status, R.k_status_code);
    message = code ? PyObject_GetAttr(status, R.k_description) : NULL;
    if (message == NULL || !(message == Py_None || PyUnicode_CheckExact(message)))
        goto fallback;
    if (message == Py_None || PyUnicode_GET_LENGTH(message) == 0)
        items[14] = Py_NewRef(R.empty);
    else if ((items[14] = PyObject_CallOneArg(R.status_text, message)) == NULL)
        goto fail; /* redacted as the Python path redacts it */
    named_status = named(R.statuses, code, R.unset);
    if (scope != Py_None) {
        scope_name = PyObject_GetAttr(scope, R.k_name_public);
        scope_version = scope_name ? PyObject_GetAttr(scope, R.k_version) : NULL;
        if (scope_version == NULL)
            goto fallback;
    }
    /* The context: a SpanContext (a tuple: trace id, span id, is remote, flags, trace state, ...). */
    if (ctx != Py_None) {
        if (Py_TYPE(ctx) != (PyTypeObject *)R.context_type || PyTuple_GET_SIZE(ctx) < 5)
            goto fallback;
        PyObject *state = PyTuple_GET_ITEM(ctx, 4);
        int truth = state == R.default_state || state == Py_None ? 0 : PyObject_IsTrue(state);
        if (truth < 0)
            goto fallback;
        if (truth == 0)
            items[4] = Py_NewRef(R.empty);
        else if ((items[4] = PyObject_CallMethodNoArgs(state, R.to_header)) == NULL)
            goto fail;
        else if (!PyUnicode_CheckExact(items[4]))
            goto fallback;
        if (!(items[1] = hex_id(PyTuple_GET_ITEM(ctx, 0), 32)) || !(items[2] = hex_id(PyTuple_GET_ITEM(ctx, 1), 16)))
            goto fallback;
    } else {
        items[1] = Py_NewRef(R.empty);
        items[2] = Py_NewRef(R.empty);
        items[4] = Py_NewRef(R.empty);
    }
    if (parent != Py_None) {
        if (Py_TYPE(parent) != (PyTypeObject *)R.context_type || PyTuple_GET_SIZE(parent) < 5
            || !(items[3] = hex_id(PyTuple_GET_ITEM(parent, 1), 16)))
            goto fallback;
    } else {
        items[3] = Py_NewRef(R.empty);
    }
    PyObject *described = PyObject_CallOneArg(R.resource, resource);
    if (described == NULL)
        goto fail;
    if (!PyTuple_CheckExact(described) || PyTuple_GET_SIZE(described) != 2) {
        Py_DECREF(described);
        goto fallback;
    }
    items[7] = Py_NewRef(PyTuple_GET_ITEM(described, 1));
    items[8] = Py_NewRef(PyTuple_GET_ITEM(described, 0));
    Py_DECREF(described);
    items[0] = start == Py_None ? PyLong_FromLong(0) : Py_NewRef(start);
    if (!items[0] || !(items[5] = column_text(name)))
        goto fail;
    items[6] = Py_NewRef(named(R.kinds, kind, R.unspecified));
    if (scope_name != NULL) {
        if (!(items[9] = column_text(scope_name)))
            goto fail;
        if (scope_version == Py_None || (PyUnicode_CheckExact(scope_version) && PyUnicode_GET_LENGTH(scope_version) == 0))
            items[10] = Py_NewRef(R.empty);
        else if (!(items[10] = column_text(scope_version)))
            goto fail;
    } else {
        items[9] = Py_NewRef(R.empty);
        items[10] = Py_NewRef(R.empty);
    }
    if (!(items[11] = build_map(attrs, R.text, R.stringify)) || !(items[12] = PyLong_FromLongLong(end_ns > start_ns ? end_ns - start_ns : 0)))
        goto fail;
    items[13] = Py_NewRef(named_status);
    for (int i = 0; i < 3; i++)
        items[15 + i] = Py_NewRef(PyTuple_GET_ITEM(R.no_events, i));
    for (int i = 0; i < 4; i++)
        items[18 + i] = Py_NewRef(PyTuple_GET_ITEM(R.no_links, i));
    row = PyList_New(22);
    if (row == NULL)
        goto fail;
    for (int i = 0; i < 22; i++) {
        PyList_SET_ITEM(row, i, items[i]);
        items[i] = NULL;
    }
    goto done;
fallback:
    PyErr_Clear();
    row = Py_NewRef(Py_None);
    goto done;
fail:
    row = NULL;
done:
    for (int i = 0; i < 22; i++)
        Py_XDECREF(items[i]);
    Py_DECREF(attrs);
    Py_XDECREF(code);
    Py_XDECREF(message);
    Py_XDECREF(scope_name);
    Py_XDECREF(scope_version);
    return row;
}

static PyObject *trace_row(PyObject *self, PyObject *fields)
{
    if (R.text == NULL || !PyDict_CheckExact(fields))
        Py_RETURN_NONE;
    PyObject *f[12] = {
        FIELD(R.k_name), FIELD(R.k_context), FIELD(R.k_parent), FIELD(R.k_start), FIELD(R.k_end), FIELD(R.k_resource),
        FIELD(R.k_scope), FIELD(R.k_events), FIELD(R.k_links), FIELD(R.k_attributes), FIELD(R.k_kind), FIELD(R.k_status),
    };
    if (PyErr_Occurred()) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    for (int i = 0; i < 12; i++)
        if (f[i] == NULL) /* not the SDK's span after all */
            Py_RETURN_NONE;
    for (int i = 0; i < 12; i++)
        Py_INCREF(f[i]);
    PyObject *row = row_of(f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10], f[11]);
    for (int i = 0; i < 12; i++)
        Py_DECREF(f[i]);
    return row;
}

static PyMethodDef METHODS[] = {
    {"attr_map", (PyCFunction)(void (*)(void))attr_map, METH_FASTCALL,
     "attr_map(attrs, text, stringify) -> the attributes as the Map(String, String) column holds them"},
    {"row_rules", (PyCFunction)(void (*)(void))row_rules, METH_FASTCALL,
     "row_rules(text, stringify, resource, kinds, statuses, no_events, no_links, SpanContext, DEFAULT_TRACE_STATE, status_text)"},
    {"trace_row", trace_row, METH_O, "trace_row(fields) -> the otel_traces row of a plain span's fields, or None"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_speedups", NULL, -1, METHODS};

PyMODINIT_FUNC PyInit__speedups(void)
{
    TRUE_TEXT = PyUnicode_InternFromString("true");
    FALSE_TEXT = PyUnicode_InternFromString("false");
    if (TRUE_TEXT == NULL || FALSE_TEXT == NULL)
        return NULL;
    struct {
        PyObject **slot;
        const char *text;
    } strings[] = {
        {&R.empty, ""}, {&R.unspecified, "Unspecified"}, {&R.unset, "Unset"}, {&R.to_header, "to_header"},
        {&R.k_name, "_name"}, {&R.k_context, "_context"}, {&R.k_parent, "_parent"}, {&R.k_start, "_start_time"},
        {&R.k_end, "_end_time"}, {&R.k_resource, "_resource"}, {&R.k_scope, "_instrumentation_scope"},
        {&R.k_events, "_events"}, {&R.k_links, "_links"}, {&R.k_attributes, "_attributes"}, {&R.k_kind, "_kind"},
        {&R.k_status, "_status"}, {&R.k_inner, "_dict"}, {&R.k_status_code, "status_code"},
        {&R.k_description, "description"}, {&R.k_name_public, "name"}, {&R.k_version, "version"},
    };
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++)
        if ((*strings[i].slot = PyUnicode_InternFromString(strings[i].text)) == NULL)
            return NULL;
    if ((R.sixty_four = PyLong_FromLong(64)) == NULL)
        return NULL;
    return PyModule_Create(&MODULE);
}
