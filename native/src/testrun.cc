// BPF_PROG_TEST_RUN for tc programs: packet bytes and a __sk_buff in, both out.
#include <bpf/bpf.h>
#include <linux/bpf.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "addon.h"

namespace dnspacer {

namespace {

bool BigIntField(Napi::Object o, const char* key, uint64_t* out) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return true;
  if (v.IsBigInt()) {
    bool lossless;
    *out = v.As<Napi::BigInt>().Uint64Value(&lossless);
    return true;
  }
  if (v.IsNumber()) {
    *out = static_cast<uint64_t>(v.As<Napi::Number>().Int64Value());
    return true;
  }
  ThrowType(o.Env(), std::string("ctx.") + key + " must be a bigint");
  return false;
}

Napi::Value TestRun(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsObject()) {
    ThrowType(env, "testRun(progFd, {data, ctx?, repeat?, dataOutSize?})");
    return env.Undefined();
  }
  int prog_fd = info[0].As<Napi::Number>().Int32Value();
  Napi::Object in = info[1].As<Napi::Object>();
  Napi::Value data_v = in.Get("data");
  if (!data_v.IsTypedArray()) {
    ThrowType(env, "testRun: data must be a Uint8Array");
    return env.Undefined();
  }
  Napi::Uint8Array data = data_v.As<Napi::Uint8Array>();
  uint32_t repeat = 1, out_size = static_cast<uint32_t>(data.ByteLength()) + 256;
  bool present;
  if (!OptionalUint32(in, "repeat", &repeat, &present)) return env.Undefined();
  if (!OptionalUint32(in, "dataOutSize", &out_size, &present)) return env.Undefined();

  struct __sk_buff ctx_in;
  struct __sk_buff ctx_out;
  std::memset(&ctx_in, 0, sizeof(ctx_in));
  std::memset(&ctx_out, 0, sizeof(ctx_out));
  bool has_ctx = false;
  Napi::Value ctx_v = in.Get("ctx");
  if (ctx_v.IsObject()) {
    Napi::Object c = ctx_v.As<Napi::Object>();
    uint32_t v32;
    uint64_t tstamp = 0;
    if (!OptionalUint32(c, "mark", &v32, &present)) return env.Undefined();
    if (present) ctx_in.mark = v32;
    if (!OptionalUint32(c, "ifindex", &v32, &present)) return env.Undefined();
    if (present) ctx_in.ifindex = v32;
    if (!OptionalUint32(c, "priority", &v32, &present)) return env.Undefined();
    if (present) ctx_in.priority = v32;
    if (!BigIntField(c, "tstamp", &tstamp)) return env.Undefined();
    ctx_in.tstamp = tstamp;
    has_ctx = true;
  }

  std::vector<uint8_t> out(out_size);
  DECLARE_LIBBPF_OPTS(bpf_test_run_opts, opts,
                      .data_in = data.Data(), .data_out = out.data(),
                      .data_size_in = static_cast<uint32_t>(data.ByteLength()), .data_size_out = out_size,
                      .ctx_in = has_ctx ? &ctx_in : nullptr, .ctx_out = &ctx_out,
                      .ctx_size_in = has_ctx ? static_cast<uint32_t>(sizeof(ctx_in)) : 0u,
                      .ctx_size_out = static_cast<uint32_t>(sizeof(ctx_out)), .repeat = static_cast<int>(repeat));
  int err = bpf_prog_test_run_opts(prog_fd, &opts);
  if (err) {
    int e = errno;
    ThrowErrno(env, e, "bpf_prog_test_run_opts",
               e == EPERM || e == EACCES ? "running a BPF test needs CAP_BPF or root"
               : e == ENOSPC            ? "data_out is too small for the packet"
               : e == EINVAL            ? "the kernel refused the test input (packet shorter than 14 bytes, or a ctx field it does not accept)"
                                        : "cannot run the BPF test");
    return env.Undefined();
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("retval", Napi::Number::New(env, static_cast<int32_t>(opts.retval)));
  result.Set("durationNs", Napi::Number::New(env, opts.duration));
  result.Set("data", Napi::Buffer<uint8_t>::Copy(env, out.data(), opts.data_size_out));
  Napi::Object c = Napi::Object::New(env);
  c.Set("mark", ctx_out.mark);
  c.Set("tstamp", Napi::BigInt::New(env, static_cast<uint64_t>(ctx_out.tstamp)));
  c.Set("ifindex", ctx_out.ifindex);
  c.Set("priority", ctx_out.priority);
  result.Set("ctx", c);
  return result;
}

}  // namespace

void InitTestRun(Napi::Env env, Napi::Object exports) {
  exports.Set("testRun", Napi::Function::New(env, TestRun));
}

}  // namespace dnspacer
