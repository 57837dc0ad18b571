// Looking across network namespaces without running anything in them.
// The id this network namespace gives another one (RTM_GETNSID with NETNSA_FD): how a
// veth's IFLA_LINK_NETNSID names the namespace of its peer. iproute2 asks the same
// way, but only for /var/run/netns names, not for /proc/<pid>/ns/net.
#include <fcntl.h>
#include <linux/net_namespace.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

#include "addon.h"
#include "netlink.h"

namespace dnspacer {
namespace {

// The attributes start at NLMSG_ALIGN(sizeof(rtgenmsg)), 4 bytes after the header, not 1.
struct NsidRequest {
  nlmsghdr header;
  rtgenmsg body;
  char pad[NLMSG_ALIGN(sizeof(rtgenmsg)) - sizeof(rtgenmsg)];
  // one u32 attribute: NETNSA_FD
  nlattr fd_attr;
  uint32_t fd;
};
static_assert(offsetof(NsidRequest, fd_attr) == NLMSG_LENGTH(NLMSG_ALIGN(sizeof(rtgenmsg))));

// Sets *id to the nsid (>= 0) or NETNSA_NSID_NOT_ASSIGNED (-1); returns 0 or an errno.
int QueryNsid(int ns_fd, int32_t* id) {
  NsidRequest req{};
  req.header.nlmsg_len = sizeof(req);
  req.header.nlmsg_type = RTM_GETNSID;
  req.header.nlmsg_flags = NLM_F_REQUEST;
  req.header.nlmsg_seq = 1;
  req.body.rtgen_family = AF_UNSPEC;
  req.fd_attr.nla_len = NLA_HDRLEN + sizeof(uint32_t);
  req.fd_attr.nla_type = NETNSA_FD;
  req.fd = static_cast<uint32_t>(ns_fd);
  int sock = RtnetlinkSend(&req, sizeof(req));
  if (sock < 0) return -sock;
  alignas(nlmsghdr) char buf[512];
  ssize_t n = recv(sock, buf, sizeof(buf), 0);
  int err = n < 0 ? errno : 0;
  close(sock);
  if (n < 0) return err;
  auto* h = reinterpret_cast<nlmsghdr*>(buf);
  if (!NLMSG_OK(h, static_cast<unsigned>(n))) return EBADMSG;
  if (h->nlmsg_type == NLMSG_ERROR) {
    auto* e = static_cast<nlmsgerr*>(NLMSG_DATA(h));
    return e->error < 0 ? -e->error : EBADMSG;
  }
  if (h->nlmsg_type != RTM_NEWNSID) return EBADMSG;
  // attributes follow the rtgenmsg
  int remaining = static_cast<int>(h->nlmsg_len) - static_cast<int>(NLMSG_LENGTH(NLMSG_ALIGN(sizeof(rtgenmsg))));
  bool found = false;
  ForEachAttr(static_cast<const char*>(NLMSG_DATA(h)) + NLMSG_ALIGN(sizeof(rtgenmsg)), remaining, [&](int type, const char* data, int len) {
    if (type == NETNSA_NSID && len >= static_cast<int>(sizeof(int32_t)) && !found) {
      std::memcpy(id, data, sizeof(*id));
      found = true;
    }
  });
  return found ? 0 : EBADMSG;
}

// netnsId(path, netns?): the id the namespace `netns` (default: ours) gives the one
// at `path`; -1 when it has given none (no link between them was ever reported).
Napi::Value NetnsId(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    ThrowType(env, "netnsId(path, netns?): path must be a string");
    return env.Undefined();
  }
  std::string path = info[0].As<Napi::String>();
  std::string from = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    ThrowErrno(env, err, "open", err == ENOENT ? "network namespace " + path + " does not exist" : "cannot open network namespace " + path);
    return env.Undefined();
  }
  int32_t id = -1;
  int err;
  {
    NetnsGuard guard(env, from);
    if (!guard.ok()) {
      close(fd);
      return env.Undefined();
    }
    err = QueryNsid(fd, &id);
  }
  close(fd);
  if (err != 0) {
    ThrowErrno(env, err, "RTM_GETNSID", "cannot ask for the id of network namespace " + path + " (is it a network namespace?)");
    return env.Undefined();
  }
  return Napi::Number::New(env, id);
}

// readProcNet(netns, name): the text of /proc/net/<name> as seen from inside `netns`
// ("" = ours), e.g. "stat/nf_conntrack". /proc/thread-self/net follows the calling
// thread's namespace, so no process has to run in there.
Napi::Value ReadProcNet(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsString() || !info[1].IsString()) {
    ThrowType(env, "readProcNet(netns, name): both must be strings");
    return env.Undefined();
  }
  std::string netns = info[0].As<Napi::String>();
  std::string name = info[1].As<Napi::String>();
  if (name.empty() || name.find("..") != std::string::npos || name[0] == '/') {
    ThrowType(env, "readProcNet: name must be a path below /proc/net, like stat/nf_conntrack");
    return env.Undefined();
  }
  std::string file = "/proc/thread-self/net/" + name;
  std::string text;
  int err = 0;
  {
    NetnsGuard guard(env, netns);
    if (!guard.ok()) return env.Undefined();
    int fd = open(file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      err = errno;
    } else {
      char buf[4096];
      for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) err = errno;
        if (n <= 0) break;
        text.append(buf, static_cast<size_t>(n));
      }
      close(fd);
    }
  }
  if (err != 0) {
    ThrowErrno(env, err, "open", "cannot read /proc/net/" + name + (netns.empty() ? "" : " in " + netns));
    return env.Undefined();
  }
  return Napi::String::New(env, text);
}

}  // namespace

void InitNsid(Napi::Env env, Napi::Object exports) {
  exports.Set("netnsId", Napi::Function::New(env, NetnsId));
  exports.Set("readProcNet", Napi::Function::New(env, ReadProcNet));
}

}  // namespace dnspacer
