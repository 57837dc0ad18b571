// Small rtnetlink helpers shared by the requests the addon makes itself.
#pragma once

#include <linux/netlink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>

namespace dnspacer {

// Opens a NETLINK_ROUTE socket and sends one request to the kernel. Returns the socket
// (the caller reads the answer and closes it) or -errno.
inline int RtnetlinkSend(const void* request, size_t length) {
  int sock = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (sock < 0) return -errno;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (sendto(sock, request, length, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof(kernel)) < 0) {
    int err = errno;
    close(sock);
    return -err;
  }
  return sock;
}

// Calls fn(type, data, length) for each attribute in [start, start + length); every length
// is checked against what is left before it is used.
template <typename Fn>
void ForEachAttr(const char* start, int length, Fn fn) {
  auto* a = reinterpret_cast<const nlattr*>(start);
  while (length >= static_cast<int>(NLA_HDRLEN) && a->nla_len >= NLA_HDRLEN && a->nla_len <= length) {
    fn(a->nla_type & NLA_TYPE_MASK, reinterpret_cast<const char*>(a) + NLA_HDRLEN, static_cast<int>(a->nla_len - NLA_HDRLEN));
    int step = static_cast<int>(NLA_ALIGN(a->nla_len));
    length -= step;
    a = reinterpret_cast<const nlattr*>(reinterpret_cast<const char*>(a) + step);
  }
}

}  // namespace dnspacer
