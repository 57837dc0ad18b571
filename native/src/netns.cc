// Entering another network namespace for one call, on the calling thread.
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "addon.h"

namespace dnspacer {

NetnsGuard::NetnsGuard(Napi::Env env, const std::string& path) {
  if (path.empty()) {
    ok_ = true;
    return;
  }
  // The thread's own namespace, not the process's: setns acts per thread.
  std::string self = "/proc/self/task/" + std::to_string(syscall(SYS_gettid)) + "/ns/net";
  original_fd_ = open(self.c_str(), O_RDONLY | O_CLOEXEC);
  if (original_fd_ < 0) {
    ThrowErrno(env, errno, "open", "cannot remember the current network namespace " + self);
    return;
  }
  int target = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    int err = errno;
    ThrowErrno(env, err, "open",
               err == ENOENT ? "network namespace " + path + " does not exist"
                             : "cannot open network namespace " + path);
    return;
  }
  if (setns(target, CLONE_NEWNET) != 0) {
    int err = errno;
    close(target);
    ThrowErrno(env, err, "setns",
               err == EPERM ? "entering network namespace " + path + " needs CAP_SYS_ADMIN or root"
                            : "cannot enter network namespace " + path + " (is it a network namespace?)");
    return;
  }
  close(target);
  entered_ = true;
  ok_ = true;
}

NetnsGuard::~NetnsGuard() {
  if (entered_ && setns(original_fd_, CLONE_NEWNET) != 0) {
    // Going on in the wrong namespace would apply later changes to the wrong place.
    std::fprintf(stderr, "dnspacer: cannot return to the original network namespace: %s\n",
                 std::strerror(errno));
    std::abort();
  }
  if (original_fd_ >= 0) close(original_fd_);
}

int ResolveIfindex(Napi::Env env, const std::string& ifname, const std::string& netns) {
  unsigned idx = if_nametoindex(ifname.c_str());
  if (idx == 0) {
    int err = errno == ENODEV || errno == ENXIO ? ENODEV : errno;
    ThrowErrno(env, err, "if_nametoindex",
               "interface " + ifname + " does not exist" + (netns.empty() ? "" : " in " + netns));
    return 0;
  }
  return static_cast<int>(idx);
}

}  // namespace dnspacer
