// Python module that hands the FFI handlers to JAX as PyCapsules.
#include <pybind11/pybind11.h>

#include "handlers.h"

namespace py = pybind11;

namespace {

template <typename T>
py::capsule capsule(T* fn) {
  static_assert(std::is_invocable_r_v<XLA_FFI_Error*, T, XLA_FFI_CallFrame*>,
                "not an XLA FFI handler");
  return py::capsule(reinterpret_cast<void*>(fn));
}

}  // namespace

PYBIND11_MODULE(_jaxint8_ffi, m) {
  m.doc() = "jaxint8 XLA FFI handlers (LLM.int8() kernels)";
  m.def("cpu_targets", []() {
    py::dict d;
    d["jaxint8_column_absmax"] = capsule(jaxint8_column_absmax_cpu);
    d["jaxint8_quantize_rows"] = capsule(jaxint8_quantize_rows_cpu);
    d["jaxint8_int8_matmul"] = capsule(jaxint8_int8_matmul_cpu);
    d["jaxint8_llm_int8_matmul"] = capsule(jaxint8_llm_int8_matmul_cpu);
    d["jaxint8_llm_int8_matmul_group"] = capsule(jaxint8_llm_int8_matmul_group_cpu);
    return d;
  });
  m.def("cuda_targets", []() {
    py::dict d;
#ifdef JAXINT8_WITH_CUDA
    d["jaxint8_column_absmax"] = capsule(jaxint8_column_absmax_cuda);
    d["jaxint8_quantize_rows"] = capsule(jaxint8_quantize_rows_cuda);
    d["jaxint8_int8_matmul"] = capsule(jaxint8_int8_matmul_cuda);
    d["jaxint8_llm_int8_matmul"] = capsule(jaxint8_llm_int8_matmul_cuda);
    d["jaxint8_llm_int8_matmul_group"] = capsule(jaxint8_llm_int8_matmul_group_cuda);
#endif
    return d;
  });
#ifdef JAXINT8_WITH_CUDA
  m.attr("built_with_cuda") = true;
#else
  m.attr("built_with_cuda") = false;
#endif
}
