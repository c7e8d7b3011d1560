/* Rows to one block of ClickHouse's Native format, in C: the bytes clickhouse-connect's codec
 * writes for the same rows, for the column types runmeter's tables use, in a fraction of its time.
 *
 * native_block(columns, rows) -> bytes
 *
 * columns: a tuple with one (head, spec) per column. head: the column's bytes ahead of its data -
 * its name and type, each length-prefixed, then the serialization prefix of its LowCardinality
 * parts (exporter/_native.py builds it). spec: what the values are - one of the codes below for a
 * plain type, (ARRAY, spec) or (MAP, key spec, value spec). rows: a list of tuples or lists, one
 * value per column.
 *
 * The block is: the column count and the row count (LEB128), then each column's head and data.
 * A String is its UTF-8 length (LEB128) and bytes; a LowCardinality(String) a dictionary of its
 * distinct values in first-seen order and an index into it of the narrowest unsigned width that
 * holds the dictionary's size (flags: new dictionary, additional keys); numbers little-endian; an
 * Array its rows' cumulative end offsets (UInt64) and then its elements as one column; a Map an
 * Array of (key, value) whose keys and values are written as two columns. These are
 * clickhouse-connect's rules (datatypes/base.py, container.py) - tests/test_native.py holds the two
 * to the same bytes.
 *
 * Only values of the exact type expected are written here: str (String), int and bool (integers,
 * DateTime64 as its ticks), float and int (Float64), tuple or list (Array), dict (Map). Anything
 * else - None, a subclass, a datetime, bytes, an integer out of range, a string with a lone
 * surrogate - raises TypeError, OverflowError or UnicodeEncodeError, and the caller encodes those
 * rows with clickhouse-connect, whose rules (and errors) stay the reference.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

enum { STRING = 1, LC_STRING = 2, UINT8 = 3, UINT16 = 4, UINT32 = 5, UINT64 = 6, INT64 = 7, FLOAT64 = 8, ARRAY = 9, MAP = 10 };

typedef struct {
    char *data;
    Py_ssize_t len, cap;
} buffer;

static int grow(buffer *b, Py_ssize_t more)
{
    if (b->len + more <= b->cap)
        return 0;
    Py_ssize_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more) {
        if (cap > PY_SSIZE_T_MAX / 2) {
            PyErr_NoMemory();
            return -1;
        }
        cap *= 2;
    }
    char *data = PyMem_Realloc(b->data, cap);
    if (data == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->data = data;
    b->cap = cap;
    return 0;
}

static int put(buffer *b, const void *data, Py_ssize_t n)
{
    if (grow(b, n) < 0)
        return -1;
    memcpy(b->data + b->len, data, n);
    b->len += n;
    return 0;
}

static int put_leb128(buffer *b, uint64_t v)
{
    if (grow(b, 10) < 0)
        return -1;
    do {
        uint8_t byte = v & 0x7f;
        v >>= 7;
        b->data[b->len++] = (char)(v ? byte | 0x80 : byte);
    } while (v);
    return 0;
}

static int put_u64(buffer *b, uint64_t v)
{
    uint8_t le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)(v >> (8 * i));
    return put(b, le, 8);
}

static int put_uint(buffer *b, uint64_t v, int width)
{
    uint8_t le[8];
    for (int i = 0; i < width; i++)
        le[i] = (uint8_t)(v >> (8 * i));
    return put(b, le, width);
}

static int wrong_type(PyObject *v, const char *wanted)
{
    PyErr_Format(PyExc_TypeError, "native_block: %s expected, got %.100s", wanted, Py_TYPE(v)->tp_name);
    return -1;
}

static int put_text(buffer *b, PyObject *v)
{
    if (!PyUnicode_CheckExact(v))
        return wrong_type(v, "str");
    Py_ssize_t n;
    const char *utf8 = PyUnicode_AsUTF8AndSize(v, &n); /* a lone surrogate: UnicodeEncodeError */
    if (utf8 == NULL)
        return -1;
    if (put_leb128(b, (uint64_t)n) < 0)
        return -1;
    return put(b, utf8, n);
}

static int put_int(buffer *b, PyObject *v, int code)
{
    if (!PyLong_CheckExact(v) && !PyBool_Check(v))
        return wrong_type(v, "int");
    if (code == INT64) {
        long long x = PyLong_AsLongLong(v);
        if (x == -1 && PyErr_Occurred())
            return -1;
        return put_u64(b, (uint64_t)x);
    }
    unsigned long long x = PyLong_AsUnsignedLongLong(v); /* negative: OverflowError */
    if (x == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    int width = code == UINT8 ? 1 : code == UINT16 ? 2 : code == UINT32 ? 4 : 8;
    if (width < 8 && x >> (8 * width)) {
        PyErr_Format(PyExc_OverflowError, "native_block: %llu does not fit in %d byte(s)", x, width);
        return -1;
    }
    return put_uint(b, x, width);
}

static int put_float(buffer *b, PyObject *v)
{
    if (!PyFloat_CheckExact(v) && !PyLong_CheckExact(v) && !PyBool_Check(v))
        return wrong_type(v, "float");
    double d = PyFloat_AsDouble(v); /* an int past a double's range: OverflowError */
    if (d == -1.0 && PyErr_Occurred())
        return -1;
    uint64_t bits;
    memcpy(&bits, &d, 8);
    return put_u64(b, bits);
}

/* The distinct values in first-seen order, then the index into them. */
static int put_low_cardinality(buffer *b, PyObject **values, Py_ssize_t n)
{
    if (n == 0)
        return 0; /* nothing at all, not even the flags (as clickhouse-connect) */
    PyObject *seen = PyDict_New();
    uint32_t *index = PyMem_Malloc(n * sizeof(uint32_t));
    buffer keys = {NULL, 0, 0};
    int rc = -1;
    if (seen == NULL || index == NULL) {
        if (index == NULL)
            PyErr_NoMemory();
        goto done;
    }
    Py_ssize_t distinct = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = values[i];
        if (!PyUnicode_CheckExact(v)) {
            wrong_type(v, "str");
            goto done;
        }
        PyObject *at = PyDict_GetItemWithError(seen, v);
        if (at != NULL) {
            index[i] = (uint32_t)PyLong_AsUnsignedLong(at);
            continue;
        }
        if (PyErr_Occurred())
            goto done;
        PyObject *k = PyLong_FromSsize_t(distinct);
        if (k == NULL)
            goto done;
        int set = PyDict_SetItem(seen, v, k);
        Py_DECREF(k);
        if (set < 0 || put_text(&keys, v) < 0)
            goto done;
        index[i] = (uint32_t)distinct++;
    }
    /* clickhouse-connect: int(log(len(index), 2)) >> 3, the power of two bytes the size needs */
    int bits = 0;
    for (uint64_t d = (uint64_t)distinct; d > 1; d >>= 1)
        bits++;
    int ix_type = bits >> 3, width = 1 << ix_type;
    if (put_u64(b, (1u << 9) | (1u << 10) | (unsigned)ix_type) < 0 || put_u64(b, (uint64_t)distinct) < 0
        || put(b, keys.data, keys.len) < 0 || put_u64(b, (uint64_t)n) < 0 || grow(b, n * width) < 0)
        goto done;
    for (Py_ssize_t i = 0; i < n; i++)
        put_uint(b, index[i], width);
    rc = 0;
done:
    Py_XDECREF(seen);
    PyMem_Free(index);
    PyMem_Free(keys.data);
    return rc;
}

static int put_values(buffer *b, PyObject *spec, PyObject **values, Py_ssize_t n);

/* An Array's or a Map's rows: their end offsets, then their elements (a Map: keys, then values). */
static int put_nested(buffer *b, PyObject *spec, long code, PyObject **values, Py_ssize_t n)
{
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = values[i];
        if (code == MAP ? !PyDict_CheckExact(v) : !(PyList_CheckExact(v) || PyTuple_CheckExact(v)))
            return wrong_type(v, code == MAP ? "dict" : "list or tuple");
        total += code == MAP ? PyDict_GET_SIZE(v) : Py_SIZE(v);
        if (put_u64(b, (uint64_t)total) < 0)
            return -1;
    }
    int parts = code == MAP ? 2 : 1;
    PyObject **flat = PyMem_Malloc((total ? total : 1) * parts * sizeof(PyObject *));
    if (flat == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    /* Borrowed: the rows hold them, and no Python code runs while they are written (exact types only). */
    Py_ssize_t at = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = values[i];
        if (code == MAP) {
            Py_ssize_t pos = 0;
            PyObject *key, *value;
            while (PyDict_Next(v, &pos, &key, &value)) {
                flat[at] = key;
                flat[total + at] = value;
                at++;
            }
        } else {
            PyObject **items = PyList_CheckExact(v) ? ((PyListObject *)v)->ob_item : ((PyTupleObject *)v)->ob_item;
            for (Py_ssize_t j = 0; j < Py_SIZE(v); j++)
                flat[at++] = items[j];
        }
    }
    int rc = put_values(b, PyTuple_GET_ITEM(spec, 1), flat, total);
    if (rc == 0 && code == MAP)
        rc = put_values(b, PyTuple_GET_ITEM(spec, 2), flat + total, total);
    PyMem_Free(flat);
    return rc;
}

static int put_values(buffer *b, PyObject *spec, PyObject **values, Py_ssize_t n)
{
    if (PyTuple_Check(spec)) {
        long code = PyLong_AsLong(PyTuple_GET_ITEM(spec, 0));
        return put_nested(b, spec, code, values, n);
    }
    long code = PyLong_AsLong(spec);
    switch (code) {
    case STRING:
        for (Py_ssize_t i = 0; i < n; i++)
            if (put_text(b, values[i]) < 0)
                return -1;
        return 0;
    case LC_STRING:
        return put_low_cardinality(b, values, n);
    case UINT8:
    case UINT16:
    case UINT32:
    case UINT64:
    case INT64:
        for (Py_ssize_t i = 0; i < n; i++)
            if (put_int(b, values[i], (int)code) < 0)
                return -1;
        return 0;
    case FLOAT64:
        for (Py_ssize_t i = 0; i < n; i++)
            if (put_float(b, values[i]) < 0)
                return -1;
        return 0;
    default:
        PyErr_Format(PyExc_ValueError, "native_block: unknown column spec %R", spec);
        return -1;
    }
}

static int valid_spec(PyObject *spec)
{
    if (PyLong_CheckExact(spec)) {
        long code = PyLong_AsLong(spec);
        return code >= STRING && code <= FLOAT64;
    }
    if (!PyTuple_CheckExact(spec) || PyTuple_GET_SIZE(spec) < 2 || !PyLong_CheckExact(PyTuple_GET_ITEM(spec, 0)))
        return 0;
    long code = PyLong_AsLong(PyTuple_GET_ITEM(spec, 0));
    if (code == ARRAY)
        return PyTuple_GET_SIZE(spec) == 2 && valid_spec(PyTuple_GET_ITEM(spec, 1));
    return code == MAP && PyTuple_GET_SIZE(spec) == 3 && valid_spec(PyTuple_GET_ITEM(spec, 1))
           && valid_spec(PyTuple_GET_ITEM(spec, 2));
}

static PyObject *native_block(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2 || !PyTuple_CheckExact(args[0]) || !PyList_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "native_block(columns: tuple, rows: list)");
        return NULL;
    }
    PyObject *columns = args[0], *rows = args[1];
    Py_ssize_t ncols = PyTuple_GET_SIZE(columns), nrows = PyList_GET_SIZE(rows);
    for (Py_ssize_t c = 0; c < ncols; c++) {
        PyObject *col = PyTuple_GET_ITEM(columns, c);
        if (!PyTuple_CheckExact(col) || PyTuple_GET_SIZE(col) != 2 || !PyBytes_CheckExact(PyTuple_GET_ITEM(col, 0))
            || !valid_spec(PyTuple_GET_ITEM(col, 1))) {
            PyErr_Format(PyExc_ValueError, "native_block: column %zd is not (head bytes, spec)", c);
            return NULL;
        }
    }
    for (Py_ssize_t r = 0; r < nrows; r++) {
        PyObject *row = PyList_GET_ITEM(rows, r);
        if (!(PyList_CheckExact(row) || PyTuple_CheckExact(row)) || Py_SIZE(row) != ncols) {
            PyErr_Format(PyExc_TypeError, "native_block: row %zd is not a list or tuple of %zd values", r, ncols);
            return NULL;
        }
    }
    /* Hold the rows, and keep the cyclic GC (run by an allocation, and with it any finalizer's Python
     * code) from running while their values are read through borrowed references. */
    int gc_was_enabled = PyGC_Disable();
    PyObject *held = PyList_GetSlice(rows, 0, nrows);
    PyObject **column = PyMem_Malloc((nrows ? nrows : 1) * sizeof(PyObject *));
    buffer b = {NULL, 0, 0};
    PyObject *out = NULL;
    if (held == NULL || column == NULL) {
        if (column == NULL)
            PyErr_NoMemory();
        goto done;
    }
    if (put_leb128(&b, (uint64_t)ncols) < 0 || put_leb128(&b, (uint64_t)nrows) < 0)
        goto done;
    for (Py_ssize_t c = 0; c < ncols; c++) {
        PyObject *col = PyTuple_GET_ITEM(columns, c);
        PyObject *head = PyTuple_GET_ITEM(col, 0);
        if (put(&b, PyBytes_AS_STRING(head), PyBytes_GET_SIZE(head)) < 0)
            goto done;
        for (Py_ssize_t r = 0; r < nrows; r++) {
            PyObject *row = PyList_GET_ITEM(held, r);
            column[r] = PyList_CheckExact(row) ? PyList_GET_ITEM(row, c) : PyTuple_GET_ITEM(row, c);
        }
        if (put_values(&b, PyTuple_GET_ITEM(col, 1), column, nrows) < 0)
            goto done;
    }
    out = PyBytes_FromStringAndSize(b.data, b.len);
done:
    Py_XDECREF(held);
    PyMem_Free(column);
    PyMem_Free(b.data);
    if (gc_was_enabled)
        PyGC_Enable();
    return out;
}

static PyMethodDef METHODS[] = {
    {"native_block", (PyCFunction)(void (*)(void))native_block, METH_FASTCALL,
     "native_block(columns, rows) -> one Native block of the rows (see exporter/_blocks.c)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_blocks", NULL, -1, METHODS, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__blocks(void)
{
    PyObject *m = PyModule_Create(&MODULE);
    if (m == NULL)
        return NULL;
    const struct {
        const char *name;
        long code;
    } codes[] = {
        {"STRING", STRING}, {"LC_STRING", LC_STRING}, {"UINT8", UINT8}, {"UINT16", UINT16}, {"UINT32", UINT32},
        {"UINT64", UINT64}, {"INT64", INT64}, {"FLOAT64", FLOAT64}, {"ARRAY", ARRAY}, {"MAP", MAP},
    };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (PyModule_AddIntConstant(m, codes[i].name, codes[i].code) < 0) {
            Py_DECREF(m);
            return NULL;
        }
    return m;
}
