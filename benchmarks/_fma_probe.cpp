// The core's fp32 FMA rate: kChains independent FMA chains kept in registers (enough to cover the FMA latency
// on every port), for AVX-512 and AVX2, run by `threads` threads at once (benchmarks/bench_roofline.py).
#include <torch/extension.h>
#include <immintrin.h>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

constexpr int kChains = 12;

__attribute__((target("avx512f"))) float run512(int64_t iters) {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(0.001f * i);
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (int64_t n = 0; n < iters; ++n)
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  float s = 0;
  for (int i = 0; i < kChains; ++i) s += _mm512_reduce_add_ps(acc[i]);
  return s;
}

__attribute__((target("avx2,fma"))) float run256(int64_t iters) {
  __m256 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(0.001f * i);
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (int64_t n = 0; n < iters; ++n)
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  alignas(32) float out[8];
  float s = 0;
  for (int i = 0; i < kChains; ++i) {
    _mm256_store_ps(out, acc[i]);
    for (float v : out) s += v;
  }
  return s;
}

// Seconds for `iters` iterations of kChains FMAs on each of `threads` threads.
double peak(const std::string& isa, int64_t iters, int64_t threads) {
  std::vector<std::thread> pool;
  std::vector<float> sink(threads);
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t t = 0; t < threads; ++t)
    pool.emplace_back([&, t] { sink[t] = isa == "avx512" ? run512(iters) : run256(iters); });
  for (auto& th : pool) th.join();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  volatile float keep = sink[0];
  (void)keep;
  return s;
}

int64_t chains() { return kChains; }

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("peak", &peak);
  m.def("chains", &chains);
}
