/* Maglev table fill: the optional C accelerator of rauta.model.maglev._populate.

Role: run the paper's fill loop (Eisenbud et al., NSDI 2016, section 3.4) for a turn
order computed in Python, and return slot -> backend index. It is the same loop as the
pure-Python phase 1 run to the end, so it builds the identical table
(tests/unit/model/test_maglev_accel.py compares the two on random backend sets).

Rules:
- Pure: no state between calls, no I/O; the GIL is released around the loop, so a build
  in a worker thread never holds up the event loop.
- Input is checked before any work: buffers of native int64 (offsets, skips: one per
  backend; order: one backend index per turn, m turns), 0 <= offset < m,
  1 <= skip < m, 0 <= order[t] < n, m prime is the caller's business (it only needs
  skip and m coprime, which a prime m guarantees). A violation raises ValueError.
- Output: a bytes object of m native uint32, read by the caller with array("I").
*/
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static PyObject *fill(PyObject *self, PyObject *args) {
    Py_buffer off, skp, ord;
    long long m_arg;
    if (!PyArg_ParseTuple(args, "y*y*y*L", &off, &skp, &ord, &m_arg))
        return NULL;
    PyObject *result = NULL;
    uint32_t *slots = NULL;
    int64_t *cursor = NULL;
    const Py_ssize_t n = off.len / (Py_ssize_t)sizeof(int64_t);
    const int64_t m = (int64_t)m_arg;
    const int64_t *offsets = (const int64_t *)off.buf;
    const int64_t *skips = (const int64_t *)skp.buf;
    const int64_t *order = (const int64_t *)ord.buf;

    if (off.len % sizeof(int64_t) || skp.len != off.len || m < 2 || m > 0x7fffffffLL ||
        ord.len != (Py_ssize_t)(m * (int64_t)sizeof(int64_t)) || n < 1 || n > 0xffffffffLL) {
        PyErr_SetString(PyExc_ValueError, "maglev fill: bad buffer sizes or table size");
        goto done;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (offsets[i] < 0 || offsets[i] >= m || skips[i] < 1 || skips[i] >= m) {
            PyErr_SetString(PyExc_ValueError, "maglev fill: offset or skip out of range");
            goto done;
        }
    }
    for (int64_t t = 0; t < m; t++) {
        if (order[t] < 0 || order[t] >= n) {
            PyErr_SetString(PyExc_ValueError, "maglev fill: turn names no backend");
            goto done;
        }
    }
    slots = PyMem_RawMalloc((size_t)m * sizeof(uint32_t));
    cursor = PyMem_RawMalloc((size_t)n * sizeof(int64_t));
    if (slots == NULL || cursor == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    memset(slots, 0xff, (size_t)m * sizeof(uint32_t));  /* 0xffffffff: empty */
    memcpy(cursor, offsets, (size_t)n * sizeof(int64_t));
    for (int64_t t = 0; t < m; t++) {
        const int64_t i = order[t];
        const int64_t s = skips[i];
        int64_t c = cursor[i];
        while (slots[c] != 0xffffffffu) {  /* m turns fill m slots: always terminates */
            c += s;
            if (c >= m) c -= m;
        }
        slots[c] = (uint32_t)i;
        c += s;
        if (c >= m) c -= m;
        cursor[i] = c;
    }
    Py_END_ALLOW_THREADS
    result = PyBytes_FromStringAndSize((const char *)slots, (Py_ssize_t)(m * sizeof(uint32_t)));
done:
    PyMem_RawFree(slots);
    PyMem_RawFree(cursor);
    PyBuffer_Release(&off);
    PyBuffer_Release(&skp);
    PyBuffer_Release(&ord);
    return result;
}

static PyMethodDef methods[] = {
    {"fill", fill, METH_VARARGS,
     "fill(offsets, skips, order, m) -> bytes of m uint32: the Maglev table"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_maglev_fill",
    "C accelerator of rauta.model.maglev (see the source's header comment).", -1, methods,
};

PyMODINIT_FUNC PyInit__maglev_fill(void) { return PyModule_Create(&module); }
