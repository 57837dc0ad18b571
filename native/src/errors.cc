// Errors a user understands, with errno attached for code that wants to branch on it.
#include <cerrno>
#include <cstring>

#include "addon.h"

namespace dnspacer {

std::string ErrnoName(int err) {
  switch (err) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case ESRCH: return "ESRCH";
    case EINTR: return "EINTR";
    case EIO: return "EIO";
    case E2BIG: return "E2BIG";
    case EBADF: return "EBADF";
    case EAGAIN: return "EAGAIN";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EFAULT: return "EFAULT";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case ENODEV: return "ENODEV";
    case ENOTDIR: return "ENOTDIR";
    case EINVAL: return "EINVAL";
    case ENOSPC: return "ENOSPC";
    case ERANGE: return "ERANGE";
    case ENOSYS: return "ENOSYS";
    case ENOTSUP: return "ENOTSUP";
    case ENOTCONN: return "ENOTCONN";
    case ESTALE: return "ESTALE";
    case EOVERFLOW: return "EOVERFLOW";
    case ELOOP: return "ELOOP";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    default: {
      std::string name = "E";
      name.append(std::to_string(err));
      return name;
    }
  }
}

void ThrowErrno(Napi::Env env, int err, const std::string& op, const std::string& message) {
  if (err < 0) err = -err;
  std::string full = message + " (" + op + ": " + std::strerror(err) + ")";
  Napi::Error e = Napi::Error::New(env, full);
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("code", Napi::String::New(env, ErrnoName(err)));
  e.Set("op", Napi::String::New(env, op));
  e.ThrowAsJavaScriptException();
}

void ThrowType(Napi::Env env, const std::string& message) {
  Napi::TypeError::New(env, message).ThrowAsJavaScriptException();
}

bool OptionalString(Napi::Object obj, const char* key, std::string* out, bool* present) {
  Napi::Value v = obj.Get(key);
  *present = false;
  if (v.IsUndefined() || v.IsNull()) return true;
  if (!v.IsString()) {
    ThrowType(obj.Env(), std::string(key) + " must be a string");
    return false;
  }
  *out = v.As<Napi::String>().Utf8Value();
  *present = true;
  return true;
}

bool OptionalUint32(Napi::Object obj, const char* key, uint32_t* out, bool* present) {
  Napi::Value v = obj.Get(key);
  *present = false;
  if (v.IsUndefined() || v.IsNull()) return true;
  if (!v.IsNumber()) {
    ThrowType(obj.Env(), std::string(key) + " must be a number");
    return false;
  }
  double d = v.As<Napi::Number>().DoubleValue();
  if (d < 0 || d > 4294967295.0 || d != static_cast<double>(static_cast<uint32_t>(d))) {
    ThrowType(obj.Env(), std::string(key) + " must be an integer from 0 to 4294967295");
    return false;
  }
  *out = static_cast<uint32_t>(d);
  *present = true;
  return true;
}

}  // namespace dnspacer
