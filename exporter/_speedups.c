/* The row builder's hottest loop in C: a span's attributes as the Map(String, String) column holds them.
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

static PyObject *attr_map(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "attr_map(attrs, text, stringify)");
        return NULL;
    }
    PyObject *attrs = args[0], *text = args[1], *stringify = args[2];
    if (!PyDict_CheckExact(attrs)) {
        PyErr_SetString(PyExc_TypeError, "attr_map: attrs must be a dict");
        return NULL;
    }
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

static PyMethodDef METHODS[] = {
    {"attr_map", (PyCFunction)(void (*)(void))attr_map, METH_FASTCALL,
     "attr_map(attrs, text, stringify) -> the attributes as the Map(String, String) column holds them"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef MODULE = {PyModuleDef_HEAD_INIT, "_speedups", NULL, -1, METHODS};

PyMODINIT_FUNC PyInit__speedups(void)
{
    TRUE_TEXT = PyUnicode_InternFromString("true");
    FALSE_TEXT = PyUnicode_InternFromString("false");
    if (TRUE_TEXT == NULL || FALSE_TEXT == NULL)
        return NULL;
    return PyModule_Create(&MODULE);
}
