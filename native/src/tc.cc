// tc clsact hooks and direct-action filters, in our namespace or another one.
#include <bpf/libbpf.h>
#include <net/if.h>

#include <cerrno>

#include "addon.h"

namespace dnspacer {

namespace {

struct Target {
  std::string netns;
  std::string ifname;
  uint32_t ifindex = 0;
  bool has_ifname = false;
  enum bpf_tc_attach_point point = BPF_TC_INGRESS;
  std::string direction;
};

bool ParseTarget(Napi::Env env, const Napi::Value& v, Target* t, bool allow_both) {
  if (!v.IsObject()) {
    ThrowType(env, "target must be an object {ifname|ifindex, direction, netns?}");
    return false;
  }
  Napi::Object o = v.As<Napi::Object>();
  bool present;
  if (!OptionalString(o, "netns", &t->netns, &present)) return false;
  if (!OptionalString(o, "ifname", &t->ifname, &t->has_ifname)) return false;
  bool has_index;
  if (!OptionalUint32(o, "ifindex", &t->ifindex, &has_index)) return false;
  if (!t->has_ifname && !has_index) {
    ThrowType(env, "target needs ifname or ifindex");
    return false;
  }
  if (!OptionalString(o, "direction", &t->direction, &present)) return false;
  if (t->direction == "ingress") {
    t->point = BPF_TC_INGRESS;
  } else if (t->direction == "egress") {
    t->point = BPF_TC_EGRESS;
  } else if (allow_both && t->direction == "both") {
    t->point = static_cast<enum bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS);
  } else {
    ThrowType(env, std::string("direction must be \"ingress\" or \"egress\"") + (allow_both ? " or \"both\"" : "") +
                       ", got \"" + t->direction + "\"");
    return false;
  }
  return true;
}

// Call after entering the namespace: names resolve there.
bool Resolve(Napi::Env env, Target* t) {
  if (t->has_ifname) {
    int idx = ResolveIfindex(env, t->ifname, t->netns);
    if (idx == 0) return false;
    t->ifindex = static_cast<uint32_t>(idx);
  }
  if (t->ifindex == 0) {
    ThrowErrno(env, ENODEV, "tc", "ifindex 0 is not an interface");
    return false;
  }
  return true;
}

std::string Where(const Target& t) {
  std::string name = t.has_ifname ? t.ifname : "ifindex " + std::to_string(t.ifindex);
  return name + (t.netns.empty() ? "" : " in " + t.netns);
}

std::string TcMessage(int err, const std::string& what, const Target& t) {
  switch (err) {
    case EPERM:
    case EACCES:
      return what + " on " + Where(t) + " needs CAP_NET_ADMIN or root";
    case ENODEV:
      return "interface " + Where(t) + " does not exist";
    case EOPNOTSUPP:
      return what + " on " + Where(t) + ": this kernel lacks clsact or cls_bpf";
    default:
      return "cannot " + what + " on " + Where(t);
  }
}

bool FilterId(Napi::Env env, Napi::Object o, uint32_t* handle, uint32_t* priority, bool required) {
  bool has_h, has_p;
  if (!OptionalUint32(o, "handle", handle, &has_h)) return false;
  if (!OptionalUint32(o, "priority", priority, &has_p)) return false;
  if (required && (!has_h || !has_p)) {
    ThrowType(env, "handle and priority are required");
    return false;
  }
  if (has_p && *priority > 0xffff) {
    ThrowType(env, "priority must be from 1 to 65535");
    return false;
  }
  return true;
}

Napi::Value TcHookCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Target t;
  if (!ParseTarget(env, info[0], &t, false)) return env.Undefined();
  NetnsGuard ns(env, t.netns);
  if (!ns.ok() || !Resolve(env, &t)) return env.Undefined();
  DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(t.ifindex), .attach_point = t.point);
  int err = bpf_tc_hook_create(&hook);
  if (err && err != -EEXIST) {
    ThrowErrno(env, err, "bpf_tc_hook_create", TcMessage(-err, "add clsact", t));
    return env.Undefined();
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("created", err == 0);
  return out;
}

Napi::Value TcHookDestroy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Target t;
  if (!ParseTarget(env, info[0], &t, true)) return env.Undefined();
  NetnsGuard ns(env, t.netns);
  if (!ns.ok() || !Resolve(env, &t)) return env.Undefined();
  DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(t.ifindex), .attach_point = t.point);
  int err = bpf_tc_hook_destroy(&hook);
  if (err && err != -ENOENT) ThrowErrno(env, err, "bpf_tc_hook_destroy", TcMessage(-err, "remove clsact", t));
  return env.Undefined();
}

Napi::Object QueryResult(Napi::Env env, const struct bpf_tc_opts& o) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("handle", o.handle);
  out.Set("priority", o.priority);
  out.Set("progId", o.prog_id);
  return out;
}

Napi::Value TcAttach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Target t;
  if (!ParseTarget(env, info[0], &t, false)) return env.Undefined();
  Napi::Object o = info[0].As<Napi::Object>();
  uint32_t handle = 0, priority = 0, prog_fd = 0;
  bool has_fd;
  if (!FilterId(env, o, &handle, &priority, false)) return env.Undefined();
  if (!OptionalUint32(o, "progFd", &prog_fd, &has_fd)) return env.Undefined();
  if (!has_fd) {
    ThrowType(env, "tcAttach needs progFd");
    return env.Undefined();
  }
  bool replace = o.Get("replace").ToBoolean();
  NetnsGuard ns(env, t.netns);
  if (!ns.ok() || !Resolve(env, &t)) return env.Undefined();
  DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(t.ifindex), .attach_point = t.point);
  // prog_id must be zero on input; the kernel reports it back.
  DECLARE_LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = static_cast<int>(prog_fd), .flags = replace ? uint32_t{BPF_TC_F_REPLACE} : 0u,
                      .handle = handle, .priority = priority);
  int err = bpf_tc_attach(&hook, &opts);
  if (err) {
    ThrowErrno(env, err, "bpf_tc_attach",
               err == -EEXIST ? "a filter already sits at handle " + std::to_string(handle) + " priority " +
                                    std::to_string(priority) + " on " + Where(t) + " (use replace)"
                              : TcMessage(-err, "attach the classifier", t));
    return env.Undefined();
  }
  return QueryResult(env, opts);
}

Napi::Value TcDetach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Target t;
  if (!ParseTarget(env, info[0], &t, false)) return env.Undefined();
  uint32_t handle = 0, priority = 0;
  if (!FilterId(env, info[0].As<Napi::Object>(), &handle, &priority, true)) return env.Undefined();
  NetnsGuard ns(env, t.netns);
  if (!ns.ok() || !Resolve(env, &t)) return env.Undefined();
  DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(t.ifindex), .attach_point = t.point);
  // Only handle and priority may be set for a detach.
  DECLARE_LIBBPF_OPTS(bpf_tc_opts, opts, .handle = handle, .priority = priority);
  int err = bpf_tc_detach(&hook, &opts);
  if (err) ThrowErrno(env, err, "bpf_tc_detach", err == -ENOENT ? "no filter at that handle and priority on " + Where(t) : TcMessage(-err, "detach the classifier", t));
  return env.Undefined();
}

Napi::Value TcQuery(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Target t;
  if (!ParseTarget(env, info[0], &t, false)) return env.Undefined();
  uint32_t handle = 0, priority = 0;
  if (!FilterId(env, info[0].As<Napi::Object>(), &handle, &priority, true)) return env.Undefined();
  NetnsGuard ns(env, t.netns);
  if (!ns.ok() || !Resolve(env, &t)) return env.Undefined();
  DECLARE_LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(t.ifindex), .attach_point = t.point);
  DECLARE_LIBBPF_OPTS(bpf_tc_opts, opts, .handle = handle, .priority = priority);
  int err = bpf_tc_query(&hook, &opts);
  if (err == -ENOENT || err == -EINVAL) return env.Null();  // EINVAL: no clsact at all
  if (err) {
    ThrowErrno(env, err, "bpf_tc_query", TcMessage(-err, "query filters", t));
    return env.Undefined();
  }
  return QueryResult(env, opts);
}

Napi::Value IfNameToIndex(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    ThrowType(env, "ifNameToIndex(ifname, netns?)");
    return env.Undefined();
  }
  std::string name = info[0].As<Napi::String>().Utf8Value();
  std::string netns = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  NetnsGuard ns(env, netns);
  if (!ns.ok()) return env.Undefined();
  int idx = ResolveIfindex(env, name, netns);
  if (idx == 0) return env.Undefined();
  return Napi::Number::New(env, idx);
}

}  // namespace

void InitTc(Napi::Env env, Napi::Object exports) {
  exports.Set("tcHookCreate", Napi::Function::New(env, TcHookCreate));
  exports.Set("tcHookDestroy", Napi::Function::New(env, TcHookDestroy));
  exports.Set("tcAttach", Napi::Function::New(env, TcAttach));
  exports.Set("tcDetach", Napi::Function::New(env, TcDetach));
  exports.Set("tcQuery", Napi::Function::New(env, TcQuery));
  exports.Set("ifNameToIndex", Napi::Function::New(env, IfNameToIndex));
}

}  // namespace dnspacer
