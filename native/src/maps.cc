// Map access by fd. Sizes come from the kernel's map info, so callers pass only
// fd and key; per-CPU values are nCpus slots of the value size rounded up to 8.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cerrno>
#include <vector>

#include "addon.h"

namespace dnspacer {

namespace {

struct MapShape {
  uint32_t key_size;
  uint32_t value_size;  // bytes a lookup returns (all CPUs for per-CPU maps)
  uint32_t type;
};

bool Shape(Napi::Env env, int fd, MapShape* out) {
  struct bpf_map_info info = {};
  uint32_t len = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &len)) {
    ThrowErrno(env, errno, "bpf_obj_get_info_by_fd", "fd " + std::to_string(fd) + " is not a BPF map");
    return false;
  }
  out->key_size = info.key_size;
  out->type = info.type;
  out->value_size = info.value_size;
  switch (info.type) {
    case BPF_MAP_TYPE_PERCPU_ARRAY:
    case BPF_MAP_TYPE_PERCPU_HASH:
    case BPF_MAP_TYPE_LRU_PERCPU_HASH:
    case BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE: {
      int cpus = libbpf_num_possible_cpus();
      if (cpus < 0) {
        ThrowErrno(env, cpus, "libbpf_num_possible_cpus", "cannot count this machine's CPUs");
        return false;
      }
      out->value_size = ((info.value_size + 7) / 8) * 8 * static_cast<uint32_t>(cpus);
      break;
    }
    default:
      break;
  }
  return true;
}

bool Args(const Napi::CallbackInfo& info, const char* usage, int* fd, MapShape* shape, Napi::Uint8Array* key) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsTypedArray()) {
    ThrowType(env, usage);
    return false;
  }
  *fd = info[0].As<Napi::Number>().Int32Value();
  if (!Shape(env, *fd, shape)) return false;
  *key = info[1].As<Napi::Uint8Array>();
  if (key->ByteLength() != shape->key_size) {
    ThrowType(env, "key must be " + std::to_string(shape->key_size) + " bytes, got " + std::to_string(key->ByteLength()));
    return false;
  }
  return true;
}

Napi::Value MapLookup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  MapShape shape;
  Napi::Uint8Array key;
  if (!Args(info, "mapLookup(fd, key)", &fd, &shape, &key)) return env.Undefined();
  Napi::Buffer<uint8_t> value = Napi::Buffer<uint8_t>::New(env, shape.value_size);
  if (bpf_map_lookup_elem(fd, key.Data(), value.Data())) {
    if (errno == ENOENT) return env.Null();
    ThrowErrno(env, errno, "bpf_map_lookup_elem", "cannot read map entry");
    return env.Undefined();
  }
  return value;
}

Napi::Value MapUpdate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  MapShape shape;
  Napi::Uint8Array key;
  if (!Args(info, "mapUpdate(fd, key, value, flags?)", &fd, &shape, &key)) return env.Undefined();
  if (info.Length() < 3 || !info[2].IsTypedArray()) {
    ThrowType(env, "mapUpdate(fd, key, value, flags?): value must be a Uint8Array");
    return env.Undefined();
  }
  Napi::Uint8Array value = info[2].As<Napi::Uint8Array>();
  if (value.ByteLength() != shape.value_size) {
    ThrowType(env, "value must be " + std::to_string(shape.value_size) + " bytes, got " + std::to_string(value.ByteLength()));
    return env.Undefined();
  }
  uint64_t flags = info.Length() > 3 && info[3].IsNumber() ? info[3].As<Napi::Number>().Uint32Value() : uint64_t{BPF_ANY};
  if (bpf_map_update_elem(fd, key.Data(), value.Data(), flags)) {
    int err = errno;
    ThrowErrno(env, err, "bpf_map_update_elem",
               err == EEXIST ? "map entry already exists" : err == E2BIG ? "map is full" : "cannot write map entry");
  }
  return env.Undefined();
}

Napi::Value MapDelete(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd;
  MapShape shape;
  Napi::Uint8Array key;
  if (!Args(info, "mapDelete(fd, key)", &fd, &shape, &key)) return env.Undefined();
  if (bpf_map_delete_elem(fd, key.Data())) {
    if (errno == ENOENT) return Napi::Boolean::New(env, false);
    ThrowErrno(env, errno, "bpf_map_delete_elem", "cannot delete map entry");
    return env.Undefined();
  }
  return Napi::Boolean::New(env, true);
}

Napi::Value MapKeys(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsNumber()) {
    ThrowType(env, "mapKeys(fd)");
    return env.Undefined();
  }
  int fd = info[0].As<Napi::Number>().Int32Value();
  MapShape shape;
  if (!Shape(env, fd, &shape)) return env.Undefined();
  Napi::Array out = Napi::Array::New(env);
  std::vector<uint8_t> prev(shape.key_size), next(shape.key_size);
  bool first = true;
  uint32_t n = 0;
  for (;;) {
    if (bpf_map_get_next_key(fd, first ? nullptr : prev.data(), next.data())) {
      if (errno == ENOENT) break;
      ThrowErrno(env, errno, "bpf_map_get_next_key", "cannot list map keys");
      return env.Undefined();
    }
    out.Set(n++, Napi::Buffer<uint8_t>::Copy(env, next.data(), next.size()));
    prev.swap(next);
    first = false;
  }
  return out;
}

}  // namespace

void InitMaps(Napi::Env env, Napi::Object exports) {
  exports.Set("mapLookup", Napi::Function::New(env, MapLookup));
  exports.Set("mapUpdate", Napi::Function::New(env, MapUpdate));
  exports.Set("mapDelete", Napi::Function::New(env, MapDelete));
  exports.Set("mapKeys", Napi::Function::New(env, MapKeys));
}

}  // namespace dnspacer
