/*
 * Optional C speed-up of JSON lines (render/jsonl.py): the line of a
 * DataRow whose values are all text format in a UTF-8 session, written
 * exactly as json.dumps(message_object(...), ensure_ascii=False) writes it.
 * The tests compare the two on real captures and on generated values.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>

static const char HEX[] = "0123456789abcdef";

/* Append b[0:n] as the body of a JSON string, escaped as json.dumps with
 * ensure_ascii=False escapes (the bytes are valid UTF-8: multi-byte
 * sequences have no byte below 0x80, so only ASCII is looked at). */
static char *
put_escaped(char *o, const unsigned char *b, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned char c = b[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *o++ = (char)c;
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '\n': *o++ = 'n'; break;
        case '\r': *o++ = 'r'; break;
        case '\t': *o++ = 't'; break;
        case '\b': *o++ = 'b'; break;
        case '\f': *o++ = 'f'; break;
        default:
            *o++ = 'u'; *o++ = '0'; *o++ = '0';
            *o++ = HEX[c >> 4]; *o++ = HEX[c & 15];
        }
    }
    return o;
}

static char *
put(char *o, const char *s, Py_ssize_t n)
{
    memcpy(o, s, (size_t)n);
    return o + n;
}

PyDoc_STRVAR(json_data_row_doc,
"json_data_row(prefix, frame, offset, length, values) -> str | None\n\n"
"The JSON line of a DataRow whose values are all text format in UTF-8:\n"
"prefix (the line up to '\"frame\": '), then frame (int or None), offset,\n"
"length and fields {\"values\": [...], \"raw\": [...]}, as json.dumps\n"
"writes them. None when a value is not valid UTF-8 (or not bytes/None).");

static PyObject *
json_data_row(PyObject *module, PyObject *args)
{
    PyObject *prefix, *frame, *values;
    long long offset, length;
    if (!PyArg_ParseTuple(args, "UOLLO!", &prefix, &frame, &offset, &length,
                          &PyTuple_Type, &values))
        return NULL;
    Py_ssize_t plen;
    const char *p = PyUnicode_AsUTF8AndSize(prefix, &plen);
    if (p == NULL)
        return NULL;
    long long frame_no = 0;
    if (frame != Py_None) {
        frame_no = PyLong_AsLongLong(frame);
        if (frame_no == -1 && PyErr_Occurred())
            return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(values);
    Py_ssize_t cap = plen + 160;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyTuple_GET_ITEM(values, i);
        if (v == Py_None) {
            cap += 12;
            continue;
        }
        if (!PyBytes_CheckExact(v))
            Py_RETURN_NONE;
        Py_ssize_t len = PyBytes_GET_SIZE(v);
        const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(v);
        for (Py_ssize_t k = 0; k < len; k++) {
            if (b[k] >= 0x80) {  /* not ASCII: valid UTF-8 only, as bytes.decode() checks */
                PyObject *text = PyUnicode_DecodeUTF8((const char *)b, len, "strict");
                if (text == NULL) {
                    if (!PyErr_ExceptionMatches(PyExc_UnicodeDecodeError))
                        return NULL;
                    PyErr_Clear();
                    Py_RETURN_NONE;
                }
                Py_DECREF(text);
                break;
            }
        }
        if (len > (PY_SSIZE_T_MAX - cap) / 9)
            Py_RETURN_NONE;
        cap += 6 * len + 2 * len + 12;
    }
    char *buf = PyMem_Malloc((size_t)cap);
    if (buf == NULL)
        return PyErr_NoMemory();
    char *o = put(buf, p, plen);
    char num[96];
    int k = frame == Py_None
        ? snprintf(num, sizeof num, "null, \"offset\": %lld, \"length\": %lld", offset, length)
        : snprintf(num, sizeof num, "%lld, \"offset\": %lld, \"length\": %lld", frame_no,
                   offset, length);
    o = put(o, num, k);
    o = put(o, ", \"fields\": {\"values\": [", 24);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyTuple_GET_ITEM(values, i);
        if (i)
            o = put(o, ", ", 2);
        if (v == Py_None) {
            o = put(o, "null", 4);
            continue;
        }
        *o++ = '"';
        o = put_escaped(o, (const unsigned char *)PyBytes_AS_STRING(v), PyBytes_GET_SIZE(v));
        *o++ = '"';
    }
    o = put(o, "], \"raw\": [", 11);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyTuple_GET_ITEM(values, i);
        if (i)
            o = put(o, ", ", 2);
        if (v == Py_None) {
            o = put(o, "null", 4);
            continue;
        }
        const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(v);
        *o++ = '"';
        for (Py_ssize_t j = 0; j < PyBytes_GET_SIZE(v); j++) {
            *o++ = HEX[b[j] >> 4];
            *o++ = HEX[b[j] & 15];
        }
        *o++ = '"';
    }
    o = put(o, "]}}\n", 4);
    PyObject *line = PyUnicode_DecodeUTF8(buf, o - buf, "strict");
    PyMem_Free(buf);
    return line;
}

static PyMethodDef methods[] = {
    {"json_data_row", json_data_row, METH_VARARGS, json_data_row_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_speedups",
    "C speed-up of JSON lines of DataRows (see jsonl.JsonLinesWriter).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
