// The statistics of an interface's root qdisc, read over rtnetlink (RTM_GETQDISC) as
// `tc -s qdisc show` reads them, without starting a process per metrics scrape.
// Serialize sends every DNS query through the IFB's root qdisc: its drops are the
// queries lost when one IFB cannot keep up.
#include <linux/netlink.h>
#include <linux/gen_stats.h>
#include <linux/pkt_sched.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <vector>

#include "addon.h"
#include "netlink.h"

namespace dnspacer {
namespace {

struct RootQdisc {
  std::string kind;
  gnet_stats_queue queue{};
};

struct DumpRequest {
  nlmsghdr header;
  tcmsg body;
};

void ParseQdisc(const nlmsghdr* h, RootQdisc* out) {
  auto* t = static_cast<const tcmsg*>(NLMSG_DATA(h));
  const char* attrs = reinterpret_cast<const char*>(t) + NLMSG_ALIGN(sizeof(tcmsg));
  int length = static_cast<int>(h->nlmsg_len) - static_cast<int>(NLMSG_LENGTH(NLMSG_ALIGN(sizeof(tcmsg))));
  bool have_stats2 = false;
  ForEachAttr(attrs, length, [&](int type, const char* data, int len) {
    if (type == TCA_KIND && len > 0) {
      out->kind.assign(data, strnlen(data, static_cast<size_t>(len)));
    } else if (type == TCA_STATS2) {
      ForEachAttr(data, len, [&](int inner, const char* qdata, int qlen) {
        if (inner == TCA_STATS_QUEUE && qlen >= static_cast<int>(sizeof(gnet_stats_queue))) {
          std::memcpy(&out->queue, qdata, sizeof(gnet_stats_queue));
          have_stats2 = true;
        }
      });
    } else if (type == TCA_STATS && !have_stats2 && len >= static_cast<int>(sizeof(tc_stats))) {
      // the older flat statistics, for a kernel that sends no TCA_STATS2
      tc_stats s;
      std::memcpy(&s, data, sizeof(s));
      out->queue.qlen = s.qlen;
      out->queue.backlog = s.backlog;
      out->queue.drops = s.drops;
      out->queue.overlimits = s.overlimits;
    }
  });
}

// Dumps the qdiscs of this namespace and keeps the root one of `ifindex`. Returns 0 or an
// errno; *found stays empty when the interface has no root qdisc (noqueue).
int DumpRootQdisc(int ifindex, std::optional<RootQdisc>* found) {
  DumpRequest req{};
  req.header.nlmsg_len = sizeof(req);
  req.header.nlmsg_type = RTM_GETQDISC;
  req.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.header.nlmsg_seq = 1;
  req.body.tcm_family = AF_UNSPEC;
  req.body.tcm_ifindex = ifindex;
  int sock = RtnetlinkSend(&req, sizeof(req));
  if (sock < 0) return -sock;
  std::vector<char> buf(32768);
  int err = 0;
  for (bool done = false; !done && err == 0;) {
    ssize_t n = recv(sock, buf.data(), buf.size(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      err = errno;
      break;
    }
    if (n == 0) break;
    unsigned left = static_cast<unsigned>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, left); h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_type == NLMSG_DONE) {
        done = true;
        break;
      }
      if (h->nlmsg_type == NLMSG_ERROR) {
        auto* e = static_cast<nlmsgerr*>(NLMSG_DATA(h));
        err = e->error < 0 ? -e->error : EBADMSG;
        break;
      }
      if (h->nlmsg_type != RTM_NEWQDISC || h->nlmsg_len < NLMSG_LENGTH(sizeof(tcmsg))) continue;
      auto* t = static_cast<const tcmsg*>(NLMSG_DATA(h));
      if (t->tcm_ifindex != ifindex || t->tcm_parent != TC_H_ROOT || found->has_value()) continue;
      RootQdisc q;
      ParseQdisc(h, &q);
      *found = q;
    }
  }
  close(sock);
  return err;
}

// rootQdiscStats(ifname, netns?): { kind, qlen, backlog, drops, requeues, overlimits } of
// the interface's root qdisc, or null when it has none.
Napi::Value RootQdiscStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) {
    ThrowType(env, "rootQdiscStats(ifname, netns?): ifname must be a string");
    return env.Undefined();
  }
  std::string ifname = info[0].As<Napi::String>();
  std::string netns = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  std::optional<RootQdisc> found;
  int err;
  {
    NetnsGuard guard(env, netns);
    if (!guard.ok()) return env.Undefined();
    int ifindex = ResolveIfindex(env, ifname, netns);
    if (ifindex == 0) return env.Undefined();
    err = DumpRootQdisc(ifindex, &found);
  }
  if (err != 0) {
    ThrowErrno(env, err, "RTM_GETQDISC", "cannot read the qdiscs of " + ifname);
    return env.Undefined();
  }
  if (!found) return env.Null();
  Napi::Object out = Napi::Object::New(env);
  out.Set("kind", found->kind);
  out.Set("qlen", found->queue.qlen);
  out.Set("backlog", found->queue.backlog);
  out.Set("drops", found->queue.drops);
  out.Set("requeues", found->queue.requeues);
  out.Set("overlimits", found->queue.overlimits);
  return out;
}

}  // namespace

void InitQdisc(Napi::Env env, Napi::Object exports) {
  exports.Set("rootQdiscStats", Napi::Function::New(env, RootQdiscStats));
}

}  // namespace dnspacer
