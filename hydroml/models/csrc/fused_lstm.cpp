// Fused single-layer LSTM recurrence for CPU training: the step loop, the gate non-linearities fused into one
// pass per step, and all weight gradients accumulated inside the backward time loop (see
// hydroml/models/_fused_lstm.py for the maths and the Python side).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <torch/library.h>
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif
#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#define HYDROML_HAS_MXCSR 1
#endif

namespace {

inline float sigm(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// float32 -> bfloat16, rounded to nearest even (the bf16 GEMM operands; finite values only)
inline uint16_t to_bf16(float x) {
  const uint32_t u = __builtin_bit_cast(uint32_t, x);
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

// Forward of one step for B rows. g: [B, 4H] pre-activations without bias; writes the activations (i, f, g, o)
// to a, c_t to c and h_t to h (rows h_stride apart); with BF also h_t in bfloat16 to hb (rows hb_stride apart).
template <bool BF = false>
void cell_forward(const float* __restrict g, const float* __restrict bias, const float* __restrict cp,
                  float* __restrict a, float* __restrict c, float* __restrict h, int64_t h_stride, int64_t B,
                  int64_t H, uint16_t* __restrict hbf = nullptr, int64_t hbf_stride = 0) {
  for (int64_t b = 0; b < B; ++b) {
    const float* gb = g + b * 4 * H;
    const float* bb = bias + b * 4 * H;
    const float* cpb = cp + b * H;
    float* ab = a + b * 4 * H;
    float* cb = c + b * H;
    float* hb = h + b * h_stride;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      float i = sigm(gb[j] + bb[j]);
      float f = sigm(gb[H + j] + bb[H + j]);
      float gg = std::tanh(gb[2 * H + j] + bb[2 * H + j]);
      float o = sigm(gb[3 * H + j] + bb[3 * H + j]);
      float cc = f * cpb[j] + i * gg;
      ab[j] = i;
      ab[H + j] = f;
      ab[2 * H + j] = gg;
      ab[3 * H + j] = o;
      cb[j] = cc;
      const float hh = o * std::tanh(cc);
      hb[j] = hh;
      if constexpr (BF) hbf[b * hbf_stride + j] = to_bf16(hh);
    }
  }
}

// Backward of one step for B rows: gate gradients to dg [B, 4H] (and accumulated into db; with BF also in
// bfloat16 to dgbf), dc updated in place (in: from step t+1; out: to step t-1). dh = dh_out + dh_next.
template <bool BF = false>
void cell_backward(const float* __restrict a, const float* __restrict c, const float* __restrict cp,
                   const float* __restrict dh_out, const float* __restrict dh_next, float* __restrict dc,
                   float* __restrict dg, float* __restrict db, int64_t B, int64_t H,
                   uint16_t* __restrict dgbf = nullptr) {
  for (int64_t b = 0; b < B; ++b) {
    const float* ab = a + b * 4 * H;
    const float* cb = c + b * H;
    const float* cpb = cp + b * H;
    const float* dob = dh_out + b * H;
    const float* dnb = dh_next + b * H;
    float* dcb = dc + b * H;
    float* dgb = dg + b * 4 * H;
    float* dbb = db + b * 4 * H;
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
      float i = ab[j], f = ab[H + j], gg = ab[2 * H + j], o = ab[3 * H + j];
      float tc = std::tanh(cb[j]);
      float dh = dob[j] + dnb[j];
      float dcc = dcb[j] + dh * o * (1.0f - tc * tc);
      float di = dcc * gg * i * (1.0f - i);
      float df = dcc * cpb[j] * f * (1.0f - f);
      float dgg = dcc * i * (1.0f - gg * gg);
      float dout = dh * tc * o * (1.0f - o);
      dgb[j] = di;
      dgb[H + j] = df;
      dgb[2 * H + j] = dgg;
      dgb[3 * H + j] = dout;
      if constexpr (BF) {
        uint16_t* d = dgbf + b * 4 * H;
        d[j] = to_bf16(di);
        d[H + j] = to_bf16(df);
        d[2 * H + j] = to_bf16(dgg);
        d[3 * H + j] = to_bf16(dout);
      }
      dbb[j] += di;
      dbb[H + j] += df;
      dbb[2 * H + j] += dgg;
      dbb[3 * H + j] += dout;
      dcb[j] = dcc * f;
    }
  }
}

void check(const at::Tensor& t, const char* name, int64_t dim) {
  TORCH_CHECK(t.scalar_type() == at::kFloat && t.device().is_cpu(), "fused LSTM: ", name,
              " must be a float32 CPU tensor");
  TORCH_CHECK(t.dim() == dim && t.is_contiguous(), "fused LSTM: ", name, " must be contiguous with ", dim,
              " dimensions, got ", t.sizes());
}

// ---- GEMMs --------------------------------------------------------------------------------------------------
// The three per-step products run on hydroml's own register-blocked micro-kernels where the CPU has AVX-512 or
// AVX2 + FMA, and on ATen's BLAS (MKL) otherwise. Why not always BLAS: MKL picks its AVX2 code on AMD CPUs, so
// on an AVX-512 EPYC it reaches half of the machine's fp32 FMA rate; and every per-step call re-packs the
// weights, which are the same for all T steps here (packed once per call below).
//
// C[M, N] (+)= A[M, Kr] B[Kr, N] with A addressed by strides (a_rs between rows of C, a_cs along the reduction:
// A can be a transposed view, as in dW^T = xh^T dg), B in panels of NR = V::L * V::NV columns (panel p at
// B + p * b_ps, reduction row k at + k * b_rs) and C row-major. N must be a multiple of the vector width V::L.
enum Isa : int { kBlas = 0, kAvx2 = 1, kAvx512 = 2 };

// A vector policy: accumulator type Acc (float32 lanes), operand type Op, L lanes, MR x NV register blocks, and
// KC reduction indices per block (a B panel of KC x L * NV operands stays in L1).
#if defined(__AVX512F__)
struct V16 {
  static constexpr int L = 16, MR = 6, NV = 4, KC = 160;  // 24 accumulators of the 32 zmm registers
  using Acc = __m512;
  using Op = __m512;
  static inline Acc zero() { return _mm512_setzero_ps(); }
  static inline Acc load(const float* p) { return _mm512_loadu_ps(p); }
  static inline void store(float* p, Acc v) { _mm512_storeu_ps(p, v); }
  static inline Op load_op(const float* p) { return _mm512_loadu_ps(p); }
  static inline Op bcast_op(const float* p) { return _mm512_set1_ps(*p); }
  static inline Acc fma(Op a, Op b, Acc c) { return _mm512_fmadd_ps(a, b, c); }
};
#endif
#if defined(__AVX512BF16__)
// bfloat16 operands, float32 accumulation (AVX-512 BF16 vdpbf16ps): each 4-byte operand slot holds a pair of
// bf16 values adjacent along the reduction, so strides count pairs and "K" below is the number of pairs.
struct VBF16 {
  static constexpr int L = 16, MR = 6, NV = 4, KC = 96;
  using Acc = __m512;
  using Op = __m512bh;
  static inline Acc zero() { return _mm512_setzero_ps(); }
  static inline Acc load(const float* p) { return _mm512_loadu_ps(p); }
  static inline void store(float* p, Acc v) { _mm512_storeu_ps(p, v); }
  static inline Op load_op(const float* p) { return (__m512bh)_mm512_loadu_si512(p); }
  static inline Op bcast_op(const float* p) {
    return (__m512bh)_mm512_set1_epi32(*reinterpret_cast<const int32_t*>(p));
  }
  static inline Acc fma(Op a, Op b, Acc c) { return _mm512_dpbf16_ps(c, a, b); }
};
#endif
#if defined(__AVX2__) && defined(__FMA__)
struct V8 {
  static constexpr int L = 8, MR = 6, NV = 2, KC = 512;  // 12 accumulators of the 16 ymm registers
  using Acc = __m256;
  using Op = __m256;
  static inline Acc zero() { return _mm256_setzero_ps(); }
  static inline Acc load(const float* p) { return _mm256_loadu_ps(p); }
  static inline void store(float* p, Acc v) { _mm256_storeu_ps(p, v); }
  static inline Op load_op(const float* p) { return _mm256_loadu_ps(p); }
  static inline Op bcast_op(const float* p) { return _mm256_broadcast_ss(p); }
  static inline Acc fma(Op a, Op b, Acc c) { return _mm256_fmadd_ps(a, b, c); }
};
#endif

using Micro = void (*)(int64_t, const float*, int64_t, int64_t, const float*, int64_t, float*, int64_t, bool);

// One MR x (NV * L) block of C, its accumulators in registers for the whole reduction.
template <class V, int MR, int NV>
void micro(int64_t kc, const float* __restrict A, int64_t a_rs, int64_t a_cs, const float* __restrict B,
           int64_t b_rs, float* __restrict C, int64_t c_rs, bool accumulate) {
  typename V::Acc c[MR][NV];
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int q = 0; q < NV; ++q) c[r][q] = accumulate ? V::load(C + r * c_rs + q * V::L) : V::zero();
  for (int64_t k = 0; k < kc; ++k) {
    const float* b = B + k * b_rs;
    const float* a = A + k * a_cs;
    typename V::Op bv[NV];
#pragma GCC unroll 4
    for (int q = 0; q < NV; ++q) bv[q] = V::load_op(b + q * V::L);
#pragma GCC unroll 8
    for (int r = 0; r < MR; ++r) {
      const typename V::Op av = V::bcast_op(a + r * a_rs);
#pragma GCC unroll 4
      for (int q = 0; q < NV; ++q) c[r][q] = V::fma(av, bv[q], c[r][q]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < MR; ++r)
#pragma GCC unroll 4
    for (int q = 0; q < NV; ++q) V::store(C + r * c_rs + q * V::L, c[r][q]);
}

template <class V, int MR>
Micro pick_nv(int nv) {
  if constexpr (V::NV >= 4) {
    if (nv == 4) return &micro<V, MR, 4>;
    if (nv == 3) return &micro<V, MR, 3>;
  }
  return nv == 2 ? &micro<V, MR, 2> : &micro<V, MR, 1>;
}

template <class V>
Micro pick(int mr, int nv) {
  switch (mr) {
    case 6: return pick_nv<V, 6>(nv);
    case 5: return pick_nv<V, 5>(nv);
    case 4: return pick_nv<V, 4>(nv);
    case 3: return pick_nv<V, 3>(nv);
    case 2: return pick_nv<V, 2>(nv);
    default: return pick_nv<V, 1>(nv);
  }
}

template <class V>
void gemm(int64_t M, int64_t N, int64_t Kr, const float* A, int64_t a_rs, int64_t a_cs, const float* B,
          int64_t b_rs, int64_t b_ps, float* C, int64_t c_rs, bool accumulate) {
  constexpr int64_t NR = V::L * V::NV;
  const int64_t blocks = (Kr + V::KC - 1) / V::KC, kc_max = (Kr + blocks - 1) / blocks;  // even blocks
  for (int64_t k0 = 0; k0 < Kr; k0 += kc_max) {
    const int64_t kc = std::min(kc_max, Kr - k0);
    const bool acc = accumulate || k0 > 0;
    for (int64_t n0 = 0; n0 < N; n0 += NR) {  // a panel of B (kc x NR) stays in L1 for all rows of C
      const int nv = static_cast<int>(std::min<int64_t>(V::NV, (N - n0) / V::L));
      const float* bp = B + (n0 / NR) * b_ps + k0 * b_rs;
      const Micro full = pick<V>(V::MR, nv);
      int64_t m0 = 0;
      for (; m0 + V::MR <= M; m0 += V::MR)
        full(kc, A + m0 * a_rs + k0 * a_cs, a_rs, a_cs, bp, b_rs, C + m0 * c_rs + n0, c_rs, acc);
      if (m0 < M)
        pick<V>(static_cast<int>(M - m0), nv)(kc, A + m0 * a_rs + k0 * a_cs, a_rs, a_cs, bp, b_rs,
                                              C + m0 * c_rs + n0, c_rs, acc);
    }
  }
}

// Packs B[k, n] = src[k * sk + n * sn] (Kr x N) into panels of NR columns, zero-padded: [ceil(N / NR), Kr, NR].
at::Tensor pack(const float* src, int64_t sk, int64_t sn, int64_t Kr, int64_t N, int64_t NR,
                const at::TensorOptions& opt) {
  const int64_t panels = (N + NR - 1) / NR;
  auto out = at::zeros({panels, Kr, NR}, opt);
  float* o = out.data_ptr<float>();
  for (int64_t p = 0; p < panels; ++p)
    for (int64_t k = 0; k < Kr; ++k)
      for (int64_t j = 0; j < NR && p * NR + j < N; ++j) o[(p * Kr + k) * NR + j] = src[k * sk + (p * NR + j) * sn];
  return out;
}

#if defined(__AVX512BF16__)
// Packs B[k, n] = src[k * sk + n * sn] as bfloat16 pairs (B[2i, n], B[2i + 1, n]) in panels of NR columns:
// [ceil(N / NR), ceil(Kr / 2), NR] 4-byte slots (returned as float32 storage), zero-padded.
at::Tensor pack_bf16(const float* src, int64_t sk, int64_t sn, int64_t Kr, int64_t N, int64_t NR,
                     const at::TensorOptions& opt) {
  const int64_t panels = (N + NR - 1) / NR, kp = (Kr + 1) / 2;
  auto out = at::zeros({panels, kp, NR}, opt);
  auto* o = reinterpret_cast<uint16_t*>(out.data_ptr<float>());
  for (int64_t p = 0; p < panels; ++p)
    for (int64_t k = 0; k < Kr; ++k)
      for (int64_t j = 0; j < NR && p * NR + j < N; ++j)
        o[((p * kp + k / 2) * NR + j) * 2 + k % 2] = to_bf16(src[k * sk + (p * NR + j) * sn]);
  return out;
}
#endif

bool cpu_bf16() {
#if defined(__AVX512BF16__)
  return __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

// Whether the bf16 path runs for hidden size H: AVX-512 BF16 in the build and the CPU, the AVX-512 path chosen.
bool bf16_for(int64_t H);

int compiled_best() {
#if defined(__AVX512F__)
  if (__builtin_cpu_supports("avx512f")) return kAvx512;
#endif
#if defined(__AVX2__) && defined(__FMA__)
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return kAvx2;
#endif
  return kBlas;
}

int& isa_choice() {  // the GEMM path asked for: the best compiled one unless HYDROML_LSTM_ISA or set_isa says
  static int choice = [] {
    const char* env = std::getenv("HYDROML_LSTM_ISA");
    const std::string s = env ? env : "auto";
    const int best = compiled_best();
    if (s == "blas") return static_cast<int>(kBlas);
    if (s == "avx2") return std::min(best, static_cast<int>(kAvx2));
    return best;
  }();
  return choice;
}

// The path used for hidden size H: the chosen one if H is a multiple of its vector width, else BLAS.
int isa_for(int64_t H) {
  const int c = isa_choice();
  if (c == kAvx512 && H % 16 == 0) return kAvx512;
  if (c >= kAvx2 && H % 8 == 0) return compiled_best() >= kAvx2 ? kAvx2 : kBlas;
  return kBlas;
}

const char* isa_name(int i) { return i == kAvx512 ? "avx512" : i == kAvx2 ? "avx2" : "blas"; }

std::string set_isa(const std::string& name) {
  const int best = compiled_best();
  if (name == "blas") isa_choice() = kBlas;
  else if (name == "avx2") isa_choice() = std::min(best, static_cast<int>(kAvx2));
  else if (name == "avx512" || name == "auto") isa_choice() = name == "auto" ? best : std::min(best, static_cast<int>(kAvx512));
  else TORCH_CHECK(false, "fused LSTM: unknown ISA '", name, "' (expected auto, avx512, avx2 or blas)");
  return isa_name(isa_choice());
}

std::string isa(int64_t hidden) { return isa_name(isa_for(hidden)); }

bool bf16_for(int64_t H) { return cpu_bf16() && isa_for(H) == kAvx512; }

bool has_bf16(int64_t hidden) { return bf16_for(hidden); }

// Threads split the batch, never a time step: each runs the whole time loop on its rows with single-threaded
// GEMMs, so a step costs no synchronisation (a per-step parallel region stalls at its barrier whenever another
// process holds one of the cores). Rows per part >= kMinRows keep the GEMMs efficient.
constexpr int64_t kMinRows = 32;

// torch.set_flush_denormal sets flush-to-zero / denormals-are-zero on the calling thread only, and the worker
// threads of the OpenMP pool keep their own setting; gradients that decay into subnormals over a long backward
// make a worker 8x slower than the caller. The worker threads therefore take the caller's setting while they
// run this kernel (and restore theirs after).
class FlushGuard {
 public:
#ifdef HYDROML_HAS_MXCSR
  static constexpr unsigned kBits = 0x8040;  // FTZ | DAZ
  static unsigned caller() { return _mm_getcsr() & kBits; }
  explicit FlushGuard(unsigned bits) : saved_(_mm_getcsr()) { _mm_setcsr((saved_ & ~kBits) | bits); }
  ~FlushGuard() { _mm_setcsr(saved_); }

 private:
  unsigned saved_;
#else
  static unsigned caller() { return 0; }
  explicit FlushGuard(unsigned) {}
#endif
};

std::vector<int64_t> row_bounds(int64_t B) {
  const int64_t parts = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), B / kMinRows));
  std::vector<int64_t> bounds(parts + 1);
  for (int64_t p = 0; p <= parts; ++p) bounds[p] = B * p / parts;
  return bounds;
}

// g [nb, 4H] = xh_t[r0 : r0 + nb] @ w_cat^T, by the selected path (wp: w_cat^T packed for it).
template <class V>
void gates_gemm(const float* a, int64_t nb, int64_t K, int64_t H, const at::Tensor& wp, float* g) {
  gemm<V>(nb, 4 * H, K, a, K, 1, wp.data_ptr<float>(), V::L * V::NV, K * V::L * V::NV, g, 4 * H, false);
}

// xh [T + 1, B, F + H]: xh[t, :, :F] = x_t (filled by the caller), xh[t, :, F:] = h_{t-1} (written here, from
// h0 at t = 0); bias [B, 4H] (per sequence); w_cat [4H, F + H] = [w_ih | w_hh]; c0 [B, H].
// Fills acts [T, B, 4H] (gate activations i, f, g, o) and cs [T, B, H] (cell states).
//
// bf16: the gate GEMM takes bfloat16 operands with float32 accumulation (a bf16 copy of [x_t | h_{t-1}] is kept
// beside xh for the duration of the call); everything else, and what backward keeps, stays float32.
void lstm_fwd(at::Tensor xh, const at::Tensor& bias, const at::Tensor& w_cat, const at::Tensor& h0,
              const at::Tensor& c0, at::Tensor acts, at::Tensor cs, bool bf16) {
  check(xh, "xh", 3);
  check(bias, "bias", 2);
  check(c0, "c0", 2);
  check(acts, "acts", 3);
  check(cs, "cs", 3);
  const int64_t T = acts.size(0), B = acts.size(1), H = cs.size(2), K = xh.size(2), F = K - H;
  TORCH_CHECK(xh.size(0) == T + 1 && xh.size(1) == B && w_cat.size(0) == 4 * H && w_cat.size(1) == K &&
                  bias.size(0) == B && c0.size(0) == B,
              "fused LSTM: inconsistent shapes");
  const auto w_c = w_cat.contiguous();
  const auto w_t = w_c.t();
  const int path = isa_for(H);
  TORCH_CHECK(!bf16 || bf16_for(H), "fused LSTM: the bf16 path needs AVX-512 BF16 and a hidden size that is a "
              "multiple of 16 (hidden ", H, ")");
  at::Tensor wp;  // w_cat^T packed once for all T steps: B[k, n] = w_cat[n, k]
  at::Tensor xhb;  // bf16: [T + 1, B, kp] pairs of [x_t | h_{t-1}] (the x part filled here, h by the steps)
  const int64_t kp = (K + 1) / 2;
#if defined(__AVX512BF16__)
  if (bf16) {
    wp = pack_bf16(w_c.data_ptr<float>(), 1, K, K, 4 * H, VBF16::L * VBF16::NV, xh.options());
    xhb = at::zeros({T + 1, B, kp}, xh.options());
    auto* d = reinterpret_cast<uint16_t*>(xhb.data_ptr<float>());
    const float* x = xh.data_ptr<float>();
    const float* h = h0.contiguous().data_ptr<float>();
    at::parallel_for(0, T * B, 1024, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t k = 0; k < F; ++k) d[i * 2 * kp + k] = to_bf16(x[i * K + k]);
    });
    for (int64_t b = 0; b < B; ++b)
      for (int64_t j = 0; j < H; ++j) d[b * 2 * kp + F + j] = to_bf16(h[b * H + j]);
  }
#endif
#if defined(__AVX512F__)
  if (path == kAvx512 && !bf16) wp = pack(w_c.data_ptr<float>(), 1, K, K, 4 * H, V16::L * V16::NV, xh.options());
#endif
#if defined(__AVX2__) && defined(__FMA__)
  if (path == kAvx2) wp = pack(w_c.data_ptr<float>(), 1, K, K, 4 * H, V8::L * V8::NV, xh.options());
#endif
  xh[0].narrow(1, F, H).copy_(h0);
  uint16_t* xhb_p = bf16 ? reinterpret_cast<uint16_t*>(xhb.data_ptr<float>()) : nullptr;
  float* xh_p = xh.data_ptr<float>();
  float* acts_p = acts.data_ptr<float>();
  float* cs_p = cs.data_ptr<float>();
  const float* bias_p = bias.data_ptr<float>();
  const float* c0_p = c0.data_ptr<float>();
  const auto bounds = row_bounds(B);
  const unsigned flush = FlushGuard::caller();
  const at::ThreadLocalState tls;  // the caller's dispatch keys (below autograd) and grad mode, for the workers
  at::parallel_for(0, static_cast<int64_t>(bounds.size()) - 1, 1, [&](int64_t p0, int64_t p1) {
    FlushGuard guard(flush);
    at::ThreadLocalStateGuard tls_guard(tls);
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t r0 = bounds[p], nb = bounds[p + 1] - r0;
      auto g = at::empty({nb, 4 * H}, xh.options());
      float* g_p = g.data_ptr<float>();
      for (int64_t t = 0; t < T; ++t) {
        const float* a = xh_p + (t * B + r0) * K;
        const float* cp = t ? cs_p + ((t - 1) * B + r0) * H : c0_p + r0 * H;
#if defined(__AVX512BF16__)
        if (bf16) {
          const auto* ab = reinterpret_cast<const float*>(xhb_p + (t * B + r0) * 2 * kp);
          gemm<VBF16>(nb, 4 * H, kp, ab, kp, 1, wp.data_ptr<float>(), 64, kp * 64, g_p, 4 * H, false);
          cell_forward<true>(g_p, bias_p + r0 * 4 * H, cp, acts_p + (t * B + r0) * 4 * H,
                             cs_p + (t * B + r0) * H, xh_p + ((t + 1) * B + r0) * K + F, K, nb, H,
                             xhb_p + ((t + 1) * B + r0) * 2 * kp + F, 2 * kp);
          continue;
        }
#endif
        switch (path) {
#if defined(__AVX512F__)
          case kAvx512: gates_gemm<V16>(a, nb, K, H, wp, g_p); break;
#endif
#if defined(__AVX2__) && defined(__FMA__)
          case kAvx2: gates_gemm<V8>(a, nb, K, H, wp, g_p); break;
#endif
          default: at::mm_out(g, xh[t].narrow(0, r0, nb), w_t);
        }
        cell_forward(g_p, bias_p + r0 * 4 * H, cp, acts_p + (t * B + r0) * 4 * H, cs_p + (t * B + r0) * H,
                     xh_p + ((t + 1) * B + r0) * K + F, K, nb, H);
      }
    }
  });
}

// One step's weight and state gradients on the micro-kernels: dW^T [K, 4H] += xh_t^T dg (the transposed
// product reads both operands row by row: no packing), dh [nb, H] = dg @ W_hh (whp: W_hh packed).
template <class V>
void step_grads(const float* xh_t, const float* dg, int64_t nb, int64_t K, int64_t H, const at::Tensor& whp,
                float* dwt, float* dh) {
  constexpr int64_t NR = V::L * V::NV;
  gemm<V>(K, 4 * H, nb, xh_t, 1, K, dg, 4 * H, NR, dwt, 4 * H, true);
  gemm<V>(nb, H, 4 * H, dg, 4 * H, 1, whp.data_ptr<float>(), NR, 4 * H * NR, dh, H, false);
}

// Gradients of lstm_fwd given grad_out [T, B, H] (of h_1..h_T), grad_hn and grad_cn [B, H].
// Returns (dx [T, B, F] or an empty tensor, d_bias [B, 4H], d_w_cat [4H, F + H], dh0, dc0).
// bf16: dh = dg W_hh takes bfloat16 operands (float32 accumulation); dW, dx and the cell pass stay float32.
std::vector<at::Tensor> lstm_bwd(const at::Tensor& xh, const at::Tensor& w_cat, const at::Tensor& c0,
                                 const at::Tensor& acts, const at::Tensor& cs, const at::Tensor& grad_out,
                                 const at::Tensor& grad_hn, const at::Tensor& grad_cn, bool need_dx, bool bf16) {
  check(grad_out, "grad_out", 3);
  const int64_t T = acts.size(0), B = acts.size(1), H = cs.size(2), K = xh.size(2), F = K - H;
  const auto w_c = w_cat.contiguous();
  const auto w_hh = w_c.narrow(1, F, H).contiguous();
  const auto w_ih = w_c.narrow(1, 0, F).contiguous();
  const int path = isa_for(H);
  TORCH_CHECK(!bf16 || bf16_for(H), "fused LSTM: the bf16 path needs AVX-512 BF16 and a hidden size that is a "
              "multiple of 16 (hidden ", H, ")");
  at::Tensor whp;  // W_hh [4H, H] packed once: B[k, n] = w_cat[k, F + n]
  at::Tensor whb;  // bf16: the same as pairs along k
#if defined(__AVX512BF16__)
  if (bf16) whb = pack_bf16(w_c.data_ptr<float>() + F, K, 1, 4 * H, H, VBF16::L * VBF16::NV, xh.options());
#endif
#if defined(__AVX512F__)
  if (path == kAvx512) whp = pack(w_c.data_ptr<float>() + F, K, 1, 4 * H, H, V16::L * V16::NV, xh.options());
#endif
#if defined(__AVX2__) && defined(__FMA__)
  if (path == kAvx2) whp = pack(w_c.data_ptr<float>() + F, K, 1, 4 * H, H, V8::L * V8::NV, xh.options());
#endif
  auto dh = grad_hn.contiguous().clone();
  auto dc = grad_cn.contiguous().clone();
  auto db = at::zeros({B, 4 * H}, xh.options());
  at::Tensor dx = need_dx ? at::empty({T, B, F}, xh.options()) : at::empty({0}, xh.options());
  const auto bounds = row_bounds(B);
  const int64_t parts = static_cast<int64_t>(bounds.size()) - 1;
  std::vector<at::Tensor> dws(parts);
  const float* xh_p = xh.data_ptr<float>();
  const float* acts_p = acts.data_ptr<float>();
  const float* cs_p = cs.data_ptr<float>();
  const float* c0_p = c0.data_ptr<float>();
  const float* go_p = grad_out.data_ptr<float>();
  const unsigned flush = FlushGuard::caller();
  const at::ThreadLocalState tls;  // the caller's dispatch keys (below autograd) and grad mode, for the workers
  at::parallel_for(0, parts, 1, [&](int64_t p0, int64_t p1) {
    FlushGuard guard(flush);
    at::ThreadLocalStateGuard tls_guard(tls);
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t r0 = bounds[p], nb = bounds[p + 1] - r0;
      auto dg = at::empty({nb, 4 * H}, xh.options());
      auto dgb = bf16 ? at::empty({nb, 2 * H}, xh.options()) : at::Tensor();  // dg as bf16 pairs
      // BLAS path: dW [4H, K] += dg^T xh_t; micro-kernel path: its transpose dW^T [K, 4H] (transposed back below)
      auto dw = path == kBlas ? at::zeros({4 * H, K}, xh.options()) : at::zeros({K, 4 * H}, xh.options());
      auto dh_p = dh.narrow(0, r0, nb);
      float* dc_p = dc.data_ptr<float>() + r0 * H;
      float* db_p = db.data_ptr<float>() + r0 * 4 * H;
      for (int64_t t = T - 1; t >= 0; --t) {
        const float* cp = t ? cs_p + ((t - 1) * B + r0) * H : c0_p + r0 * H;
#if defined(__AVX512BF16__)
        if (bf16) {
          cell_backward<true>(acts_p + (t * B + r0) * 4 * H, cs_p + (t * B + r0) * H, cp,
                              go_p + (t * B + r0) * H, dh_p.data_ptr<float>(), dc_p, dg.data_ptr<float>(), db_p,
                              nb, H, reinterpret_cast<uint16_t*>(dgb.data_ptr<float>()));
          if (need_dx) {
            auto dx_t = dx[t].narrow(0, r0, nb);
            at::mm_out(dx_t, dg, w_ih);
          }
          const float* xh_t = xh_p + (t * B + r0) * K;
          gemm<V16>(K, 4 * H, nb, xh_t, 1, K, dg.data_ptr<float>(), 4 * H, 64, dw.data_ptr<float>(), 4 * H, true);
          gemm<VBF16>(nb, H, 2 * H, dgb.data_ptr<float>(), 2 * H, 1, whb.data_ptr<float>(), 64, 2 * H * 64,
                      dh_p.data_ptr<float>(), H, false);
          continue;
        }
#endif
        cell_backward(acts_p + (t * B + r0) * 4 * H, cs_p + (t * B + r0) * H, cp, go_p + (t * B + r0) * H,
                      dh_p.data_ptr<float>(), dc_p, dg.data_ptr<float>(), db_p, nb, H);
        if (need_dx) {
          auto dx_t = dx[t].narrow(0, r0, nb);
          at::mm_out(dx_t, dg, w_ih);
        }
        const float* xh_t = xh_p + (t * B + r0) * K;
        switch (path) {
#if defined(__AVX512F__)
          case kAvx512: step_grads<V16>(xh_t, dg.data_ptr<float>(), nb, K, H, whp, dw.data_ptr<float>(),
                                        dh_p.data_ptr<float>()); break;
#endif
#if defined(__AVX2__) && defined(__FMA__)
          case kAvx2: step_grads<V8>(xh_t, dg.data_ptr<float>(), nb, K, H, whp, dw.data_ptr<float>(),
                                     dh_p.data_ptr<float>()); break;
#endif
          default:
            dw.addmm_(dg.t(), xh[t].narrow(0, r0, nb));
            at::mm_out(dh_p, dg, w_hh);
        }
      }
      dws[p] = path == kBlas ? dw : dw.t().contiguous();
    }
  });
  auto dw = dws[0];
  for (int64_t p = 1; p < parts; ++p) dw.add_(dws[p]);
  return {dx, db, dw, dh, dc};
}

}  // namespace

TORCH_LIBRARY(hydroml_lstm, m) {
  m.def("fwd(Tensor(a!) xh, Tensor bias, Tensor w_cat, Tensor h0, Tensor c0, Tensor(b!) acts, Tensor(c!) cs, "
        "bool bf16) -> ()");
  m.def("bwd(Tensor xh, Tensor w_cat, Tensor c0, Tensor acts, Tensor cs, Tensor grad_out, Tensor grad_hn, "
        "Tensor grad_cn, bool need_dx, bool bf16) -> Tensor[]");
  m.def("has_bf16(int hidden) -> bool", &has_bf16);
  m.def("isa(int hidden) -> str", &isa);
  m.def("set_isa(str name) -> str", &set_isa);
}
TORCH_LIBRARY_IMPL(hydroml_lstm, CPU, m) {
  m.impl("fwd", &lstm_fwd);
  m.impl("bwd", &lstm_bwd);
}
