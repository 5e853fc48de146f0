// Private to the client library: what the wire and the gRPC client share to hand each delivered
// message to the application once (the server delivers at least once) and to choose fresh ids.
#ifndef MESSENGER_CLIENT_SRC_RECENT_IDS_H_
#define MESSENGER_CLIENT_SRC_RECENT_IDS_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <random>
#include <unordered_set>

namespace messenger::client_internal {

// Delivered message ids remembered to recognise redeliveries: far more than can be between a
// delivery and its ACK at any time, and bounded so a long-running client does not grow forever.
inline constexpr std::size_t kRecentIdCapacity = 10000;

// The most recently inserted ids, the oldest evicted first. Not thread-safe.
class RecentIds {
 public:
  explicit RecentIds(std::size_t capacity) : capacity_(capacity) {}

  bool Contains(std::uint64_t id) const { return ids_.count(id) != 0; }

  void Insert(std::uint64_t id) {
    if (!ids_.insert(id).second) return;
    order_.push_back(id);
    if (order_.size() > capacity_) {
      ids_.erase(order_.front());
      order_.pop_front();
    }
  }

 private:
  const std::size_t capacity_;
  std::deque<std::uint64_t> order_;
  std::unordered_set<std::uint64_t> ids_;
};

// A random starting point for fresh client message ids and PING nonces, so that they differ
// between client objects and between runs of a program without any stored state.
inline std::uint64_t RandomU64() {
  std::random_device device;
  return (static_cast<std::uint64_t>(device()) << 32) ^ static_cast<std::uint64_t>(device());
}

}  // namespace messenger::client_internal

#endif  // MESSENGER_CLIENT_SRC_RECENT_IDS_H_
