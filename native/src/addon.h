// Shared declarations of the dnspacer N-API addon.
#pragma once

#include <napi.h>
#include <string>

namespace dnspacer {

// Throws a JS Error carrying errno (positive), code ("ENOENT") and op
// ("bpf_tc_attach"). `message` is what a user reads first; the system's wording
// of errno follows in parentheses.
void ThrowErrno(Napi::Env env, int err, const std::string& op, const std::string& message);
void ThrowType(Napi::Env env, const std::string& message);
std::string ErrnoName(int err);

// Reads an optional string property; false (with a pending exception) on a wrong type.
bool OptionalString(Napi::Object obj, const char* key, std::string* out, bool* present);
bool OptionalUint32(Napi::Object obj, const char* key, uint32_t* out, bool* present);

// Runs fn inside the network namespace at `path` ("" = our own) on this thread and
// always returns to the original one. Returns false with a pending JS exception if
// the namespace cannot be entered.
class NetnsGuard {
 public:
  NetnsGuard(Napi::Env env, const std::string& path);
  ~NetnsGuard();
  bool ok() const { return ok_; }

 private:
  int original_fd_ = -1;
  bool entered_ = false;
  bool ok_ = false;
};

// Resolves an interface name inside the current namespace; 0 with a pending
// "interface X does not exist" error when it is absent.
int ResolveIfindex(Napi::Env env, const std::string& ifname, const std::string& netns);

void InitObject(Napi::Env env, Napi::Object exports);
void InitMaps(Napi::Env env, Napi::Object exports);
void InitTc(Napi::Env env, Napi::Object exports);
void InitTestRun(Napi::Env env, Napi::Object exports);
void InitRingBuffer(Napi::Env env, Napi::Object exports);
void InitLog(Napi::Env env, Napi::Object exports);
void InitNsid(Napi::Env env, Napi::Object exports);
void InitQdisc(Napi::Env env, Napi::Object exports);

}  // namespace dnspacer
