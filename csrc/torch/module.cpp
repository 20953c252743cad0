// The Python module bnn_kernels._C: loading it runs the static op registrations. It carries
// build facts only (no ops: every op goes through torch.ops.bnn_kernels): WITH_CUDA and
// cpu_gemm_isa(), the CPU micro-kernel in effect (it follows BNN_KERNELS_CPU_ISA at each call).
#include <Python.h>

#include "gemm/popcount_gemm.h"

#ifndef BNN_WITH_CUDA
#define BNN_WITH_CUDA 0
#endif

static PyObject* cpu_gemm_isa(PyObject*, PyObject*) { return PyUnicode_FromString(bnn::cpu::gemm_isa()); }

static PyMethodDef methods[] = {
    {"cpu_gemm_isa", cpu_gemm_isa, METH_NOARGS, "The CPU GEMM micro-kernel in effect."},
    {nullptr, nullptr, 0, nullptr},
};

extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C", "bnn_kernels native ops", -1, methods};
  PyObject* m = PyModule_Create(&def);
  if (m == nullptr) return nullptr;
  PyModule_AddIntConstant(m, "WITH_CUDA", BNN_WITH_CUDA);
  return m;
}
