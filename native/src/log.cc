// libbpf's messages (verifier logs among them) go to a JS callback, or nowhere.
#include <bpf/libbpf.h>

#include <cstdarg>
#include <cstdio>
#include <string>
#include <thread>

#include "addon.h"

namespace dnspacer {

namespace {

Napi::FunctionReference* logger = nullptr;
napi_env logger_env = nullptr;
std::thread::id js_thread;

int Silent(enum libbpf_print_level, const char*, va_list) { return 0; }

int Forward(enum libbpf_print_level level, const char* fmt, va_list args) {
  // libbpf only runs on the JS thread in this addon; anything else is dropped
  // rather than touching JS from the wrong thread.
  if (!logger || std::this_thread::get_id() != js_thread) return 0;
  va_list copy;
  va_copy(copy, args);
  int n = std::vsnprintf(nullptr, 0, fmt, copy);
  va_end(copy);
  if (n < 0) return 0;
  std::string msg(static_cast<size_t>(n) + 1, '\0');
  std::vsnprintf(msg.data(), msg.size(), fmt, args);
  msg.resize(static_cast<size_t>(n));
  while (!msg.empty() && (msg.back() == '\n' || msg.back() == '\r')) msg.pop_back();
  if (msg.empty()) return 0;
  const char* name = level == LIBBPF_WARN ? "warn" : level == LIBBPF_INFO ? "info" : "debug";
  Napi::Env env(logger_env);
  Napi::HandleScope scope(env);
  logger->Call({Napi::String::New(env, name), Napi::String::New(env, msg)});
  // A throwing logger must not break the libbpf call in progress.
  if (env.IsExceptionPending()) env.GetAndClearPendingException();
  return n;
}

Napi::Value SetLogger(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (logger) {
    logger->Reset();
    delete logger;
    logger = nullptr;
  }
  if (info.Length() > 0 && info[0].IsFunction()) {
    logger = new Napi::FunctionReference(Napi::Persistent(info[0].As<Napi::Function>()));
    logger_env = env;
    js_thread = std::this_thread::get_id();
    libbpf_set_print(Forward);
  } else if (info.Length() > 0 && !info[0].IsNull() && !info[0].IsUndefined()) {
    ThrowType(env, "setLogger(fn | null)");
  } else {
    libbpf_set_print(Silent);
  }
  return env.Undefined();
}

}  // namespace

void InitLog(Napi::Env env, Napi::Object exports) {
  libbpf_set_print(Silent);
  exports.Set("setLogger", Napi::Function::New(env, SetLogger));
}

}  // namespace dnspacer
