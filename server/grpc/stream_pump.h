// StreamPump: a task queue run by its own threads: one for the pulls a stream's wake-up asks
// for, a few more for the checkpoint file I/O (see the end).
//
// The core wakes a stream (watch, commands) through a notify callback that must not block and
// may run under the core's lock; the stream's next item can only be pulled by calling back into
// the core. So the callback only posts a task here, and this thread pulls and starts the write.
// Pulls are short (a lock and a copy, or one batch read from the store), so one thread serves
// every stream.
//
// The upload and download reactors (services.cc) use a second instance with a few threads for
// their blocking file work (reading, writing and hashing chunks, fsync and rename at commit),
// which must not run on gRPC's callback threads nor delay the stream pulls.
//
// Threading: Post() from any thread; tasks run in queue order, concurrently when there are
// several threads. The destructor runs the tasks still queued, then joins.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace loratrf::server {

class StreamPump {
 public:
  explicit StreamPump(int threads = 1);
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
  std::vector<std::thread> threads_;          // last: start after the fields above exist
};

}  // namespace loratrf::server
