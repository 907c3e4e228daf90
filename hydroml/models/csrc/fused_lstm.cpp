// Fused single-layer LSTM recurrence for CPU training: the step loop, the gate non-linearities fused into one
// pass per step, and all weight gradients accumulated inside the backward time loop (see
// hydroml/models/_fused_lstm.py for the maths and the Python side).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <torch/library.h>
#include <algorithm>
#include <cmath>
#include <vector>
#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
#define HYDROML_HAS_MXCSR 1
#endif

namespace {

inline float sigm(float x) { return 1.0f / (1.0f + std::exp(-x)); }

// Forward of one step for B rows. g: [B, 4H] pre-activations without bias; writes the activations (i, f, g, o)
// to a, c_t to c and h_t to h (rows h_stride apart).
void cell_forward(const float* __restrict g, const float* __restrict bias, const float* __restrict cp,
                  float* __restrict a, float* __restrict c, float* __restrict h, int64_t h_stride, int64_t B,
                  int64_t H) {
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
      hb[j] = o * std::tanh(cc);
    }
  }
}

// Backward of one step for B rows: gate gradients to dg [B, 4H] (and accumulated into db), dc updated in place
// (in: from step t+1; out: to step t-1). dh = dh_out + dh_next.
void cell_backward(const float* __restrict a, const float* __restrict c, const float* __restrict cp,
                   const float* __restrict dh_out, const float* __restrict dh_next, float* __restrict dc,
                   float* __restrict dg, float* __restrict db, int64_t B, int64_t H) {
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

// xh [T + 1, B, F + H]: xh[t, :, :F] = x_t (filled by the caller), xh[t, :, F:] = h_{t-1} (written here, from
// h0 at t = 0); bias [B, 4H] (per sequence); w_cat [4H, F + H] = [w_ih | w_hh]; c0 [B, H].
// Fills acts [T, B, 4H] (gate activations i, f, g, o) and cs [T, B, H] (cell states).
void lstm_fwd(at::Tensor xh, const at::Tensor& bias, const at::Tensor& w_cat, const at::Tensor& h0,
              const at::Tensor& c0, at::Tensor acts, at::Tensor cs) {
  check(xh, "xh", 3);
  check(bias, "bias", 2);
  check(c0, "c0", 2);
  check(acts, "acts", 3);
  check(cs, "cs", 3);
  const int64_t T = acts.size(0), B = acts.size(1), H = cs.size(2), K = xh.size(2), F = K - H;
  TORCH_CHECK(xh.size(0) == T + 1 && xh.size(1) == B && w_cat.size(0) == 4 * H && w_cat.size(1) == K &&
                  bias.size(0) == B && c0.size(0) == B,
              "fused LSTM: inconsistent shapes");
  const auto w_t = w_cat.t();
  xh[0].narrow(1, F, H).copy_(h0);
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
      for (int64_t t = 0; t < T; ++t) {
        at::mm_out(g, xh[t].narrow(0, r0, nb), w_t);
        const float* cp = t ? cs_p + ((t - 1) * B + r0) * H : c0_p + r0 * H;
        cell_forward(g.data_ptr<float>(), bias_p + r0 * 4 * H, cp, acts_p + (t * B + r0) * 4 * H,
                     cs_p + (t * B + r0) * H, xh_p + ((t + 1) * B + r0) * K + F, K, nb, H);
      }
    }
  });
}

// Gradients of lstm_fwd given grad_out [T, B, H] (of h_1..h_T), grad_hn and grad_cn [B, H].
// Returns (dx [T, B, F] or an empty tensor, d_bias [B, 4H], d_w_cat [4H, F + H], dh0, dc0).
std::vector<at::Tensor> lstm_bwd(const at::Tensor& xh, const at::Tensor& w_cat, const at::Tensor& c0,
                                 const at::Tensor& acts, const at::Tensor& cs, const at::Tensor& grad_out,
                                 const at::Tensor& grad_hn, const at::Tensor& grad_cn, bool need_dx) {
  check(grad_out, "grad_out", 3);
  const int64_t T = acts.size(0), B = acts.size(1), H = cs.size(2), K = xh.size(2), F = K - H;
  const auto w_hh = w_cat.narrow(1, F, H).contiguous();
  const auto w_ih = w_cat.narrow(1, 0, F).contiguous();
  auto dh = grad_hn.contiguous().clone();
  auto dc = grad_cn.contiguous().clone();
  auto db = at::zeros({B, 4 * H}, xh.options());
  at::Tensor dx = need_dx ? at::empty({T, B, F}, xh.options()) : at::empty({0}, xh.options());
  const auto bounds = row_bounds(B);
  const int64_t parts = static_cast<int64_t>(bounds.size()) - 1;
  std::vector<at::Tensor> dws(parts);
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
      auto dw = at::zeros({4 * H, K}, xh.options());
      auto dh_p = dh.narrow(0, r0, nb);
      float* dc_p = dc.data_ptr<float>() + r0 * H;
      float* db_p = db.data_ptr<float>() + r0 * 4 * H;
      for (int64_t t = T - 1; t >= 0; --t) {
        const float* cp = t ? cs_p + ((t - 1) * B + r0) * H : c0_p + r0 * H;
        cell_backward(acts_p + (t * B + r0) * 4 * H, cs_p + (t * B + r0) * H, cp, go_p + (t * B + r0) * H,
                      dh_p.data_ptr<float>(), dc_p, dg.data_ptr<float>(), db_p, nb, H);
        dw.addmm_(dg.t(), xh[t].narrow(0, r0, nb));
        if (need_dx) {
          auto dx_t = dx[t].narrow(0, r0, nb);
          at::mm_out(dx_t, dg, w_ih);
        }
        at::mm_out(dh_p, dg, w_hh);
      }
      dws[p] = dw;
    }
  });
  auto dw = dws[0];
  for (int64_t p = 1; p < parts; ++p) dw.add_(dws[p]);
  return {dx, db, dw, dh, dc};
}

}  // namespace

TORCH_LIBRARY(hydroml_lstm, m) {
  m.def("fwd(Tensor(a!) xh, Tensor bias, Tensor w_cat, Tensor h0, Tensor c0, Tensor(b!) acts, Tensor(c!) cs) -> ()");
  m.def("bwd(Tensor xh, Tensor w_cat, Tensor c0, Tensor acts, Tensor cs, Tensor grad_out, Tensor grad_hn, "
        "Tensor grad_cn, bool need_dx) -> Tensor[]");
}
TORCH_LIBRARY_IMPL(hydroml_lstm, CPU, m) {
  m.impl("fwd", &lstm_fwd);
  m.impl("bwd", &lstm_bwd);
}
