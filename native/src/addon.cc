// Module entry: every part registers its functions on `exports`.
#include "addon.h"

#include <bpf/libbpf.h>

namespace dnspacer {

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  // Errors come back as negative errno from every libbpf call.
  libbpf_set_strict_mode(LIBBPF_STRICT_ALL);
  InitLog(env, exports);
  InitObject(env, exports);
  InitMaps(env, exports);
  InitTc(env, exports);
  InitTestRun(env, exports);
  InitRingBuffer(env, exports);
  InitNsid(env, exports);
  InitQdisc(env, exports);
  return exports;
}

}  // namespace dnspacer

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) {
  return dnspacer::Init(env, exports);
}

NODE_API_MODULE(dnspacer_native, InitModule)
