// BPF objects: open, share maps, load; list maps and programs; close.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cerrno>

#include "addon.h"

namespace dnspacer {

namespace {

bool IsPerCpu(enum bpf_map_type t) {
  return t == BPF_MAP_TYPE_PERCPU_ARRAY || t == BPF_MAP_TYPE_PERCPU_HASH ||
         t == BPF_MAP_TYPE_LRU_PERCPU_HASH || t == BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE;
}

std::string LoadMessage(int err, const std::string& file) {
  switch (err) {
    case EPERM:
    case EACCES:
      return "loading BPF needs CAP_BPF or root";
    case ENOENT:
      return "BPF object " + file + " does not exist (run `npm run build:bpf`)";
    case EINVAL:
      return "the kernel refused " + file + " (see the verifier log above)";
    case E2BIG:
      return "the verifier gave up on " + file + " (program too complex for this kernel)";
    default:
      return "cannot load BPF object " + file;
  }
}

class BpfObject : public Napi::ObjectWrap<BpfObject> {
 public:
  static Napi::FunctionReference* constructor;

  static void Register(Napi::Env env) {
    Napi::Function fn = DefineClass(env, "BpfObject",
                                    {
                                        InstanceMethod<&BpfObject::Maps>("maps"),
                                        InstanceMethod<&BpfObject::Programs>("programs"),
                                        InstanceMethod<&BpfObject::Close>("close"),
                                        InstanceAccessor<&BpfObject::Path>("path"),
                                    });
    constructor = new Napi::FunctionReference(Napi::Persistent(fn));
  }

  explicit BpfObject(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BpfObject>(info) {}
  ~BpfObject() override { Release(); }

  void Adopt(struct bpf_object* obj, const std::string& path) {
    obj_ = obj;
    path_ = path;
  }

 private:
  void Release() {
    if (obj_) {
      bpf_object__close(obj_);
      obj_ = nullptr;
    }
  }

  bool Check(Napi::Env env) {
    if (obj_) return true;
    Napi::Error::New(env, "BPF object " + path_ + " is closed").ThrowAsJavaScriptException();
    return false;
  }

  Napi::Value Path(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), path_); }

  Napi::Value Maps(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Check(env)) return env.Undefined();
    Napi::Array out = Napi::Array::New(env);
    struct bpf_map* map;
    uint32_t i = 0;
    bpf_object__for_each_map(map, obj_) {
      Napi::Object m = Napi::Object::New(env);
      enum bpf_map_type type = bpf_map__type(map);
      m.Set("name", bpf_map__name(map));
      m.Set("fd", bpf_map__fd(map));
      m.Set("type", static_cast<uint32_t>(type));
      m.Set("keySize", bpf_map__key_size(map));
      m.Set("valueSize", bpf_map__value_size(map));
      m.Set("maxEntries", bpf_map__max_entries(map));
      m.Set("perCpu", IsPerCpu(type));
      out.Set(i++, m);
    }
    return out;
  }

  Napi::Value Programs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!Check(env)) return env.Undefined();
    Napi::Array out = Napi::Array::New(env);
    struct bpf_program* prog;
    uint32_t i = 0;
    bpf_object__for_each_program(prog, obj_) {
      Napi::Object p = Napi::Object::New(env);
      int fd = bpf_program__fd(prog);
      struct bpf_prog_info pinfo = {};
      uint32_t len = sizeof(pinfo);
      uint32_t id = 0;
      if (fd >= 0 && bpf_obj_get_info_by_fd(fd, &pinfo, &len) == 0) id = pinfo.id;
      p.Set("name", bpf_program__name(prog));
      p.Set("section", bpf_program__section_name(prog));
      p.Set("fd", fd);
      p.Set("id", id);
      out.Set(i++, p);
    }
    return out;
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Release();
    return info.Env().Undefined();
  }

  struct bpf_object* obj_ = nullptr;
  std::string path_;
};

Napi::FunctionReference* BpfObject::constructor = nullptr;

Napi::Value OpenObject(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    ThrowType(env, "openObject(file, opts?): file must be a string");
    return env.Undefined();
  }
  std::string file = info[0].As<Napi::String>().Utf8Value();
  Napi::Object opts = info.Length() > 1 && info[1].IsObject() ? info[1].As<Napi::Object>() : Napi::Object::New(env);

  struct bpf_object* obj = bpf_object__open_file(file.c_str(), nullptr);
  if (!obj) {
    int err = errno;
    ThrowErrno(env, err, "bpf_object__open_file", LoadMessage(err, file));
    return env.Undefined();
  }

  Napi::Value reuse = opts.Get("reuseMaps");
  if (reuse.IsObject()) {
    Napi::Object r = reuse.As<Napi::Object>();
    Napi::Array names = r.GetPropertyNames();
    for (uint32_t i = 0; i < names.Length(); i++) {
      std::string name = names.Get(i).As<Napi::String>().Utf8Value();
      Napi::Value fdv = r.Get(name);
      struct bpf_map* map = bpf_object__find_map_by_name(obj, name.c_str());
      if (!map || !fdv.IsNumber()) {
        bpf_object__close(obj);
        ThrowType(env, "reuseMaps: " + (map ? "fd of " + name + " must be a number" : "no map named " + name + " in " + file));
        return env.Undefined();
      }
      int err = bpf_map__reuse_fd(map, fdv.As<Napi::Number>().Int32Value());
      if (err) {
        bpf_object__close(obj);
        ThrowErrno(env, err, "bpf_map__reuse_fd", "cannot share map " + name + " (is the fd a map of the same shape?)");
        return env.Undefined();
      }
    }
  }

  Napi::Value initial = opts.Get("initialValues");
  if (initial.IsObject()) {
    Napi::Object iv = initial.As<Napi::Object>();
    Napi::Array names = iv.GetPropertyNames();
    for (uint32_t i = 0; i < names.Length(); i++) {
      std::string name = names.Get(i).As<Napi::String>().Utf8Value();
      Napi::Value buf = iv.Get(name);
      struct bpf_map* map = bpf_object__find_map_by_name(obj, name.c_str());
      if (!map || !buf.IsTypedArray()) {
        bpf_object__close(obj);
        ThrowType(env, "initialValues: " + (map ? "value of " + name + " must be a Uint8Array" : "no map named " + name + " in " + file));
        return env.Undefined();
      }
      Napi::Uint8Array bytes = buf.As<Napi::Uint8Array>();
      int err = bpf_map__set_initial_value(map, bytes.Data(), bytes.ByteLength());
      if (err) {
        bpf_object__close(obj);
        ThrowErrno(env, err, "bpf_map__set_initial_value", "initial value of " + name + " does not fit the map");
        return env.Undefined();
      }
    }
  }

  int err = bpf_object__load(obj);
  if (err) {
    bpf_object__close(obj);
    ThrowErrno(env, err, "bpf_object__load", LoadMessage(-err, file));
    return env.Undefined();
  }

  Napi::Object wrapped = BpfObject::constructor->New({});
  BpfObject::Unwrap(wrapped)->Adopt(obj, file);
  return wrapped;
}

Napi::Value NumPossibleCpus(const Napi::CallbackInfo& info) {
  int n = libbpf_num_possible_cpus();
  if (n < 0) {
    ThrowErrno(info.Env(), n, "libbpf_num_possible_cpus", "cannot count this machine's CPUs");
    return info.Env().Undefined();
  }
  return Napi::Number::New(info.Env(), n);
}

Napi::Value ObjPin(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsString()) {
    ThrowType(env, "objPin(fd, path)");
    return env.Undefined();
  }
  std::string path = info[1].As<Napi::String>().Utf8Value();
  if (bpf_obj_pin(info[0].As<Napi::Number>().Int32Value(), path.c_str())) {
    int err = errno;
    ThrowErrno(env, err, "bpf_obj_pin",
               err == EEXIST ? path + " is already pinned" : "cannot pin at " + path + " (is bpffs mounted on /sys/fs/bpf?)");
  }
  return env.Undefined();
}

Napi::Value ObjGet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    ThrowType(env, "objGet(path)");
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>().Utf8Value();
  int fd = bpf_obj_get(path.c_str());
  if (fd < 0) {
    int err = errno;
    ThrowErrno(env, err, "bpf_obj_get", err == ENOENT ? "nothing is pinned at " + path : "cannot open pinned object " + path);
    return env.Undefined();
  }
  return Napi::Number::New(env, fd);
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    ThrowType(env, "closeFd(fd)");
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  if (fd < 0 || close(fd) != 0) ThrowErrno(env, fd < 0 ? EBADF : errno, "close", "cannot close fd " + std::to_string(fd));
  return env.Undefined();
}

Napi::Value ProgIdFromFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    ThrowType(env, "progIdFromFd(fd)");
    return env.Undefined();
  }
  struct bpf_prog_info pinfo = {};
  uint32_t len = sizeof(pinfo);
  if (bpf_obj_get_info_by_fd(info[0].As<Napi::Number>().Int32Value(), &pinfo, &len)) {
    ThrowErrno(env, errno, "bpf_obj_get_info_by_fd", "fd is not a BPF program");
    return env.Undefined();
  }
  return Napi::Number::New(env, pinfo.id);
}

}  // namespace

void InitObject(Napi::Env env, Napi::Object exports) {
  BpfObject::Register(env);
  exports.Set("openObject", Napi::Function::New(env, OpenObject));
  exports.Set("numPossibleCpus", Napi::Function::New(env, NumPossibleCpus));
  exports.Set("objPin", Napi::Function::New(env, ObjPin));
  exports.Set("objGet", Napi::Function::New(env, ObjGet));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd));
  exports.Set("progIdFromFd", Napi::Function::New(env, ProgIdFromFd));
}

}  // namespace dnspacer
