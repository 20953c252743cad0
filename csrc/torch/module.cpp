// The Python module bnn_kernels._C: loading it runs the static op registrations. It carries
// build facts only (no ops: every op goes through torch.ops.bnn_kernels): WITH_CUDA and
// cpu_gemm_isa(), the CPU micro-kernel in effect (it follows BNN_KERNELS_CPU_ISA at each call),
// and cpu_conv_path(), the kernel binary_conv2d runs now for a conv with groups = 1.
#include <Python.h>

#include "conv/direct.h"
#include "gemm/popcount_gemm.h"

#ifndef BNN_WITH_CUDA
#define BNN_WITH_CUDA 0
#endif

static PyObject* cpu_gemm_isa(PyObject*, PyObject*) { return PyUnicode_FromString(bnn::cpu::gemm_isa()); }

static PyObject* cpu_conv_path(PyObject*, PyObject*) {
  bnn::ConvParams p{};
  p.batch = p.in_h = p.in_w = p.out_h = p.out_w = 1;
  p.in_channels = p.out_channels = 32;
  p.kernel_h = p.kernel_w = p.groups = p.stride_h = p.stride_w = p.dil_h = p.dil_w = 1;
  return PyUnicode_FromString(bnn::cpu::conv_path_name(p));
}

static PyMethodDef methods[] = {
    {"cpu_gemm_isa", cpu_gemm_isa, METH_NOARGS, "The CPU GEMM micro-kernel in effect."},
    {"cpu_conv_path", cpu_conv_path, METH_NOARGS, "The CPU binary_conv2d kernel in effect (groups = 1)."},
    {nullptr, nullptr, 0, nullptr},
};

extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef def = {PyModuleDef_HEAD_INIT, "_C", "bnn_kernels native ops", -1, methods};
  PyObject* m = PyModule_Create(&def);
  if (m == nullptr) return nullptr;
  PyModule_AddIntConstant(m, "WITH_CUDA", BNN_WITH_CUDA);
  return m;
}
