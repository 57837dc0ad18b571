// Ring-buffer consumption on Node's own event loop: the ring buffer's epoll fd
// sits under a uv_poll_t, and records are handed to JS as they become readable.
// No thread of our own, no busy polling.
#include <bpf/libbpf.h>
#include <uv.h>

#include <cerrno>

#include "addon.h"

namespace dnspacer {

namespace {

class RingBuffer : public Napi::ObjectWrap<RingBuffer> {
 public:
  static Napi::FunctionReference* constructor;

  static void Register(Napi::Env env) {
    Napi::Function fn = DefineClass(env, "RingBuffer", {InstanceMethod<&RingBuffer::Close>("close")});
    constructor = new Napi::FunctionReference(Napi::Persistent(fn));
  }

  explicit RingBuffer(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RingBuffer>(info) {}
  ~RingBuffer() override { Stop(); }

  // Returns false with a pending exception.
  bool Start(Napi::Env env, int map_fd, Napi::Function cb) {
    env_ = env;
    rb_ = ring_buffer__new(map_fd, &RingBuffer::OnSample, this, nullptr);
    if (!rb_) {
      ThrowErrno(env, errno, "ring_buffer__new", "cannot open the ring buffer (is the fd a BPF_MAP_TYPE_RINGBUF map?)");
      return false;
    }
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
      Stop();
      Napi::Error::New(env, "cannot reach the event loop").ThrowAsJavaScriptException();
      return false;
    }
    poll_ = new uv_poll_t;
    poll_->data = this;
    int err = uv_poll_init(loop, poll_, ring_buffer__epoll_fd(rb_));
    if (err == 0) err = uv_poll_start(poll_, UV_READABLE, &RingBuffer::OnReadable);
    if (err) {
      Stop();
      Napi::Error::New(env, std::string("cannot poll the ring buffer: ") + uv_strerror(err)).ThrowAsJavaScriptException();
      return false;
    }
    callback_ = Napi::Persistent(cb);
    context_ = new Napi::AsyncContext(env, "dnspacer.ringbuffer");
    // Stay alive while polling even if JS drops its reference; close() lets go.
    Ref();
    open_ = true;
    return true;
  }

 private:
  static int OnSample(void* ctx, void* data, size_t size) {
    auto* self = static_cast<RingBuffer*>(ctx);
    Napi::Env env = self->env_;
    Napi::HandleScope scope(env);
    Napi::Buffer<uint8_t> record = Napi::Buffer<uint8_t>::Copy(env, static_cast<uint8_t*>(data), size);
    self->callback_.MakeCallback(env.Global(), {record}, *self->context_);
    if (env.IsExceptionPending()) {
      Napi::Error err = env.GetAndClearPendingException();
      napi_fatal_exception(env, err.Value());
      return -1;  // stop this round; the process reports the exception
    }
    return self->open_ ? 0 : -1;  // the callback may have closed us
  }

  static void OnReadable(uv_poll_t* handle, int status, int /*events*/) {
    auto* self = static_cast<RingBuffer*>(handle->data);
    if (!self || !self->rb_ || status < 0) return;
    self->consuming_ = true;
    ring_buffer__consume(self->rb_);
    self->consuming_ = false;
    if (!self->open_) self->Stop();
  }

  void Stop() {
    if (poll_) {
      uv_poll_stop(poll_);
      poll_->data = nullptr;
      uv_close(reinterpret_cast<uv_handle_t*>(poll_), [](uv_handle_t* h) { delete reinterpret_cast<uv_poll_t*>(h); });
      poll_ = nullptr;
    }
    if (rb_) {
      ring_buffer__free(rb_);
      rb_ = nullptr;
    }
    if (context_) {
      delete context_;
      context_ = nullptr;
    }
    if (!callback_.IsEmpty()) callback_.Reset();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    if (open_) {
      open_ = false;
      // Inside a callback the ring buffer is still being consumed: stop afterwards.
      if (!consuming_) Stop();
      Unref();
    }
    return info.Env().Undefined();
  }

  Napi::Env env_ = nullptr;
  struct ring_buffer* rb_ = nullptr;
  uv_poll_t* poll_ = nullptr;
  Napi::FunctionReference callback_;
  Napi::AsyncContext* context_ = nullptr;
  bool open_ = false;
  bool consuming_ = false;
};

Napi::FunctionReference* RingBuffer::constructor = nullptr;

Napi::Value RingBufferOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsNumber() || !info[1].IsFunction()) {
    ThrowType(env, "ringBufferOpen(mapFd, onRecord)");
    return env.Undefined();
  }
  Napi::Object obj = RingBuffer::constructor->New({});
  if (!RingBuffer::Unwrap(obj)->Start(env, info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Function>())) {
    return env.Undefined();
  }
  return obj;
}

}  // namespace

void InitRingBuffer(Napi::Env env, Napi::Object exports) {
  RingBuffer::Register(env);
  exports.Set("ringBufferOpen", Napi::Function::New(env, RingBufferOpen));
}

}  // namespace dnspacer
