/*
 * Optional C speed-up of the protocol parser's hot path: runs of DataRow
 * messages, which are most of the bytes of any big result.
 *
 * data_rows() splits consecutive complete DataRow messages (PostgreSQL docs,
 * "Frontend/Backend Protocol", "Message Formats", DataRow (B)) out of a
 * buffer into DataRow objects. It stops, without consuming it, at the first
 * message that is not a DataRow, is incomplete, or is not well formed: the
 * Python parser (_framing.py) then handles it and reports any problem with
 * its byte offset. For every row it accepts it builds exactly what
 * _decode.fast_data_row builds; the tests compare the two on every input.
 *
 * The rows are instances of the frozen, slotted dataclass DataRow, made as
 * object.__new__ does and filled through their slot descriptors with
 * PyObject_GenericSetAttr (the dataclass's __setattr__ only forbids
 * assignment after construction).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* protocol/_codes.py MAX_MESSAGE_LENGTH */
#define MAX_MESSAGE_LENGTH 0x3FFFFFFF

static PyObject *name_direction, *name_offset, *name_raw, *name_values, *empty_args;

static inline uint32_t
be32(const unsigned char *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* Number of columns of the well-formed DataRow b[start:end], or -1. */
static Py_ssize_t
check_row(const unsigned char *b, Py_ssize_t start, Py_ssize_t end)
{
    Py_ssize_t q = start + 7;
    int16_t n = (int16_t)((b[start + 5] << 8) | b[start + 6]);
    if (n < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        if (q + 4 > end)
            return -1;
        int32_t size = (int32_t)be32(b + q);
        q += 4;
        if (size == -1)
            continue;
        if (size < 0 || size > end - q)
            return -1;
        q += size;
    }
    return q == end ? n : -1;
}

static PyObject *
make_row(PyTypeObject *cls, const unsigned char *b, Py_ssize_t start, Py_ssize_t end,
         Py_ssize_t n, PyObject *direction, long long offset)
{
    PyObject *values = PyTuple_New(n);
    if (values == NULL)
        return NULL;
    Py_ssize_t q = start + 7;
    for (Py_ssize_t i = 0; i < n; i++) {
        int32_t size = (int32_t)be32(b + q);
        q += 4;
        PyObject *value;
        if (size == -1) {
            value = Py_NewRef(Py_None);
        } else {
            value = PyBytes_FromStringAndSize((const char *)b + q, size);
            if (value == NULL) {
                Py_DECREF(values);
                return NULL;
            }
            q += size;
        }
        PyTuple_SET_ITEM(values, i, value);
    }
    PyObject *raw = PyBytes_FromStringAndSize((const char *)b + start, end - start);
    PyObject *off = PyLong_FromLongLong(offset);
    PyObject *row = NULL;
    if (raw != NULL && off != NULL)
        row = PyBaseObject_Type.tp_new(cls, empty_args, NULL);
    if (row != NULL &&
        (PyObject_GenericSetAttr(row, name_direction, direction) < 0 ||
         PyObject_GenericSetAttr(row, name_offset, off) < 0 ||
         PyObject_GenericSetAttr(row, name_raw, raw) < 0 ||
         PyObject_GenericSetAttr(row, name_values, values) < 0)) {
        Py_CLEAR(row);
    }
    Py_XDECREF(raw);
    Py_XDECREF(off);
    Py_DECREF(values);
    return row;
}

PyDoc_STRVAR(data_rows_doc,
"data_rows(buf, pos, limit, offset, direction, cls, max_rows) -> (rows, end)\n\n"
"Split the complete, well-formed DataRow messages that follow one another\n"
"from buf[pos] (a bytes-like object), not reading at or past buf[limit].\n"
"offset is the stream offset of buf[pos]; each row gets its own. Stops at\n"
"the first message that is not such a DataRow, or after max_rows rows.\n"
"Returns the list of cls(direction, offset, raw, values) objects and the\n"
"index in buf just past the last one (pos when there is none).");

static PyObject *
data_rows(PyObject *module, PyObject *args)
{
    Py_buffer view;
    Py_ssize_t pos, limit, max_rows;
    long long offset;
    PyObject *direction;
    PyTypeObject *cls;
    if (!PyArg_ParseTuple(args, "y*nnLUO!n", &view, &pos, &limit, &offset, &direction,
                          &PyType_Type, &cls, &max_rows))
        return NULL;
    if (pos < 0 || limit > view.len || pos > limit) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "pos and limit must satisfy 0 <= pos <= limit <= len(buf)");
        return NULL;
    }
    const unsigned char *b = (const unsigned char *)view.buf;
    PyObject *rows = PyList_New(0);
    if (rows == NULL) {
        PyBuffer_Release(&view);
        return NULL;
    }
    Py_ssize_t p = pos;
    Py_ssize_t count = 0;
    while (count < max_rows && limit - p >= 7 && b[p] == 'D') {
        uint32_t length = be32(b + p + 1);
        if (length < 6 || length > MAX_MESSAGE_LENGTH || (Py_ssize_t)length >= limit - p)
            break;
        Py_ssize_t end = p + 1 + (Py_ssize_t)length;
        Py_ssize_t n = check_row(b, p, end);
        if (n < 0)
            break;
        PyObject *row = make_row(cls, b, p, end, n, direction, offset + (long long)(p - pos));
        if (row == NULL || PyList_Append(rows, row) < 0) {
            Py_XDECREF(row);
            Py_DECREF(rows);
            PyBuffer_Release(&view);
            return NULL;
        }
        Py_DECREF(row);
        p = end;
        count++;
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("(Nn)", rows, p);
}

static PyMethodDef methods[] = {
    {"data_rows", data_rows, METH_VARARGS, data_rows_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_speedups",
    "C speed-up of the DataRow hot path (see _framing.StreamParser.next_message).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    name_direction = PyUnicode_InternFromString("direction");
    name_offset = PyUnicode_InternFromString("offset");
    name_raw = PyUnicode_InternFromString("raw");
    name_values = PyUnicode_InternFromString("values");
    empty_args = PyTuple_New(0);
    if (!name_direction || !name_offset || !name_raw || !name_values || !empty_args)
        return NULL;
    return PyModule_Create(&module);
}
