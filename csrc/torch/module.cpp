// The Python module bnn_kernels._C: loading it runs the static op registrations. It carries
// build facts only (no ops: every op goes through torch.ops.bnn_kernels).
#include <Python.h>

#include "gemm/popcount_gemm.h"

#ifndef BNN_WITH_CUDA
#define BNN_WITH_CUDA 0
#endif

extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C", "bnn_kernels native ops", -1, nullptr};
  PyObject* m = PyModule_Create(&def);
  if (m == nullptr) return nullptr;
  PyModule_AddIntConstant(m, "WITH_CUDA", BNN_WITH_CUDA);
  PyModule_AddStringConstant(m, "CPU_GEMM_ISA", bnn::cpu::popcount_gemm_isa());
  return m;
}
