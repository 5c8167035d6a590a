// StreamPump: one thread that runs the pulls a stream's wake-up asks for.
//
// The core wakes a stream (watch, commands) through a notify callback that must not block and
// may run under the core's lock; the stream's next item can only be pulled by calling back into
// the core. So the callback only posts a task here, and this thread pulls and starts the write.
// Pulls are short (a lock and a copy, or one batch read from the store), so one thread serves
// every stream.
//
// Threading: Post() from any thread. The destructor runs the tasks still queued, then joins.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace loratrf::server {

class StreamPump {
 public:
  StreamPump();
  ~StreamPump();
  StreamPump(const StreamPump&) = delete;
  StreamPump& operator=(const StreamPump&) = delete;

  void Post(std::function<void()> task);

 private:
  void Run();

  std::mutex mu_;
  std::condition_variable wake_;              // signalled on Post and on stop
  std::deque<std::function<void()>> tasks_;   // guarded by mu_
  bool stopping_ = false;                     // guarded by mu_
  std::thread thread_;                        // last: starts after the fields above exist
};

}  // namespace loratrf::server
