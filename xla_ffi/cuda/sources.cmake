# CUDA kernels and their FFI handlers, linked into _jaxint8_ffi.
# One CUTLASS kernel configuration per translation unit so that they compile in parallel.
# Files under sm90/ use Hopper-only instructions (wgmma, TMA) and are built for sm_90a only.
file(GLOB JAXINT8_CUDA_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/*.cu)
file(GLOB JAXINT8_CUDA_SM90_SOURCES CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/sm90/*.cu)

set(JAXINT8_CUDA_OPTIONS
  $<$<COMPILE_LANGUAGE:CUDA>:--expt-relaxed-constexpr -lineinfo
    -Xcudafe --diag_suppress=esa_on_defaulted_function_ignored>)

function(jaxint8_cuda_library name)
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/xla_ffi)
  target_include_directories(${name} SYSTEM PRIVATE "${XLA_FFI_INCLUDE_DIR}" "${CUTLASS_INCLUDE_DIR}")
  set_target_properties(${name} PROPERTIES POSITION_INDEPENDENT_CODE ON CUDA_RUNTIME_LIBRARY Static)
  target_compile_options(${name} PRIVATE ${JAXINT8_CUDA_OPTIONS})
  target_link_libraries(${name} PUBLIC CUDA::cudart_static)
endfunction()

add_library(jaxint8_cuda STATIC ${JAXINT8_CUDA_SOURCES})
jaxint8_cuda_library(jaxint8_cuda)

list(FIND CMAKE_CUDA_ARCHITECTURES "90a" _has_sm90a)
if(JAXINT8_CUDA_SM90_SOURCES AND NOT _has_sm90a EQUAL -1)
  add_library(jaxint8_cuda_sm90 STATIC ${JAXINT8_CUDA_SM90_SOURCES})
  jaxint8_cuda_library(jaxint8_cuda_sm90)
  set_target_properties(jaxint8_cuda_sm90 PROPERTIES CUDA_ARCHITECTURES 90a)
  target_compile_definitions(jaxint8_cuda PUBLIC JAXINT8_WITH_SM90=1)
  target_link_libraries(jaxint8_cuda PUBLIC jaxint8_cuda_sm90)
endif()
