// The swarm step (runner.h): many clients at once, every message accounted for.
#include <poll.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "messenger/codec/codec.h"
#include "messenger/codec/limits.h"
#include "messenger/codec/messages.h"
#include "runner.h"
#include "scenario.h"
#include "scenario_client.h"

namespace messenger::conformance {
namespace {

// Request ids of the swarm's requests; a SEND's id is kFirstSendId + its number.
constexpr std::uint32_t kHelloId = 1;
constexpr std::uint32_t kCreateId = 2;
constexpr std::uint32_t kLoginId = 3;
constexpr std::uint32_t kFirstSendId = 10;
constexpr std::uint32_t kAckId = 5000;
constexpr std::uint32_t kFetchId = 5001;

struct SentMessage {
  int sender = 0;
  int recipient = 0;
  int number = 0;  // 0-based, in the sender's sending order.
  std::string text;
  std::optional<SendOk> accepted;
  int deliveries = 0;
};

// What a swarm client expects as the answer to one of its requests.
struct Pending {
  std::uint32_t request_id = 0;
  MessageType type = MessageType::kOk;
  int message = -1;  // For a SEND: the index into the sent messages.
};

struct SwarmClient {
  std::string name;
  std::unique_ptr<ScenarioClient> connection;
  std::deque<Pending> pending;
  std::vector<StoredMessage> delivered;  // DELIVER pushes, in arrival order.
};

class Swarm {
 public:
  Swarm(int clients, int messages, bool acceptance_order, std::chrono::milliseconds timeout,
        Transcript& transcript)
      : messages_per_client_(messages),
        acceptance_order_(acceptance_order),
        timeout_(timeout),
        transcript_(transcript) {
    const int width = clients < 100 ? 2 : 3;
    for (int i = 0; i < clients; ++i) {
      char name[16];
      std::snprintf(name, sizeof name, "swarm%0*d", width, i + 1);
      clients_.push_back(std::make_unique<SwarmClient>());
      clients_.back()->name = name;
    }
  }

  std::string Run(const ClientFactory& connect) {
    const int n = static_cast<int>(clients_.size());
    for (auto& client : clients_) {
      Result<std::unique_ptr<ScenarioClient>> opened = connect();
      if (!opened.ok()) return client->name + ": " + opened.status().message();
      client->connection = std::move(opened).value();
    }
    // Every client registers and logs in, pipelined, all at the same time. Over gRPC there is
    // no handshake to make.
    for (auto& client : clients_) {
      client->pending.clear();
      if (client->connection->transport() == Transport::kWire) {
        client->pending.push_back({kHelloId, MessageType::kHelloOk});
        if (std::string e = Write(*client, Frame{kHelloId, Hello{kProtocolVersion}}); !e.empty()) {
          return e;
        }
      }
      client->pending.push_back({kCreateId, MessageType::kOk});
      client->pending.push_back({kLoginId, MessageType::kLoginOk});
      for (const Frame& frame : {Frame{kCreateId, CreateAccount{client->name, kMacroPassword}},
                                 Frame{kLoginId, Login{client->name, kMacroPassword}}}) {
        if (std::string e = Write(*client, frame); !e.empty()) return e;
      }
    }
    if (std::string e = PumpUntilAnswered(); !e.empty()) return e;
    transcript_.Add("swarm: " + std::to_string(n) + " clients registered and logged in");

    // Message k of client i goes to client (i + 1 + k mod (n - 1)) mod n: never to itself, and
    // every client receives as many as it sends. Sent round by round so that all clients send
    // at the same time.
    for (int k = 0; k < messages_per_client_; ++k) {
      for (int i = 0; i < n; ++i) {
        SentMessage message;
        message.sender = i;
        message.recipient = (i + 1 + k % (n - 1)) % n;
        message.number = k;
        message.text = "message " + std::to_string(k + 1) + " from " + clients_[i]->name;
        const auto id = static_cast<std::uint32_t>(kFirstSendId + k);
        const Frame frame{id, Send{clients_[message.recipient]->name,
                                   static_cast<std::uint64_t>(k + 1), message.text}};
        clients_[i]->pending.push_back({id, MessageType::kSendOk, static_cast<int>(sent_.size())});
        by_text_[message.text] = static_cast<int>(sent_.size());
        sent_.push_back(std::move(message));
        if (std::string e = Write(*clients_[i], frame); !e.empty()) return e;
      }
    }
    const std::size_t total = sent_.size();
    if (std::string e = PumpUntil([&] { return AllAnswered() && delivered_ >= total; });
        !e.empty()) {
      return e;
    }
    if (std::string e = CheckDeliveries(); !e.empty()) return e;
    transcript_.Add("swarm: " + std::to_string(total) +
                    " messages sent, each pushed once to its recipient in sending order" +
                    (acceptance_order_ ? " and in acceptance order" : ""));

    // Everything acknowledged: nothing may be left to fetch.
    for (auto& client : clients_) {
      Ack ack;
      for (const StoredMessage& m : client->delivered) ack.message_ids.push_back(m.message_id);
      client->pending = {{kAckId, MessageType::kOk}, {kFetchId, MessageType::kMessageBatch}};
      for (const Frame& frame :
           {Frame{kAckId, std::move(ack)}, Frame{kFetchId, FetchUndelivered{kMaxFetchLimit}}}) {
        if (std::string e = Write(*client, frame); !e.empty()) return e;
      }
    }
    if (std::string e = PumpUntilAnswered(); !e.empty()) return e;
    if (delivered_ != total) {
      return "a message was pushed again while the swarm acknowledged: " +
             std::to_string(delivered_) + " pushes for " + std::to_string(total) + " messages";
    }
    transcript_.Add("swarm: all acknowledged; nothing left to fetch");
    for (auto& client : clients_) client->connection->Close();
    return "";
  }

 private:
  std::string Write(SwarmClient& client, const Frame& frame) {
    if (client.connection->SendRequest(frame, timeout_).ok()) return "";
    return client.name + ": " + client.connection->write_error();
  }

  bool AllAnswered() const {
    return std::all_of(clients_.begin(), clients_.end(),
                       [](const auto& client) { return client->pending.empty(); });
  }

  std::string PumpUntilAnswered() {
    return PumpUntil([this] { return AllAnswered(); });
  }

  // Reads from every client until `done()`; fails when nothing arrives for the timeout.
  template <typename Done>
  std::string PumpUntil(Done done) {
    Clock::time_point deadline = Clock::now() + timeout_;
    std::vector<pollfd> fds(clients_.size());
    while (!done()) {
      for (std::size_t i = 0; i < clients_.size(); ++i) {
        fds[i] = {clients_[i]->connection->wait_fd(), POLLIN, 0};
      }
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
      if (left <= 0 || ::poll(fds.data(), fds.size(), static_cast<int>(left)) <= 0) {
        return Stalled();
      }
      for (std::size_t i = 0; i < clients_.size(); ++i) {
        if (fds[i].revents == 0) continue;
        SwarmClient& client = *clients_[i];
        client.connection->Receive(Clock::now());
        while (!client.connection->inbox().empty()) {
          Arrival arrival = std::move(client.connection->inbox().front());
          client.connection->inbox().pop_front();
          if (std::string e = Handle(client, arrival); !e.empty()) return e;
        }
        if (client.connection->closed()) {
          return client.name + ": the server closed the connection (" +
                 client.connection->close_detail() + ")";
        }
      }
      deadline = Clock::now() + timeout_;  // Progress: wait the full timeout again.
    }
    return "";
  }

  std::string Stalled() const {
    std::size_t waiting = 0;
    std::string example;
    for (const auto& client : clients_) {
      waiting += client->pending.size();
      if (example.empty() && !client->pending.empty()) {
        example = client->name + " waits for " +
                  std::string(MessageTypeName(client->pending.front().type)) + " #" +
                  std::to_string(client->pending.front().request_id);
      }
    }
    return "nothing arrived for " + std::to_string(timeout_.count()) + " ms; " +
           std::to_string(waiting) + " responses outstanding" +
           (example.empty() ? "" : " (" + example + ")") + ", " + std::to_string(delivered_) +
           " of " + std::to_string(sent_.size()) + " messages pushed";
  }

  std::string Handle(SwarmClient& client, const Arrival& arrival) {
    if (!arrival.frame) return client.name + " received " + arrival.text;
    const Frame& frame = *arrival.frame;
    if (const auto* deliver = std::get_if<Deliver>(&frame.message)) {
      client.delivered.push_back(deliver->message);
      ++delivered_;
      return "";
    }
    if (IsPush(TypeOf(frame.message)) || client.pending.empty()) {
      return client.name + " received a frame it does not expect: " + arrival.text;
    }
    const Pending expected = client.pending.front();
    client.pending.pop_front();
    const auto wrong = [&](const std::string& what) {
      return client.name + ": expected " + what + ", got " + arrival.text;
    };
    const std::string want =
        std::string(MessageTypeName(expected.type)) + " #" + std::to_string(expected.request_id);
    if (frame.request_id != expected.request_id || TypeOf(frame.message) != expected.type) {
      return wrong(want + " (responses come in request order)");
    }
    if (const auto* hello = std::get_if<HelloOk>(&frame.message)) {
      if (hello->protocol_version != kProtocolVersion) return wrong(want + " protocol_version=1");
    } else if (const auto* login = std::get_if<LoginOk>(&frame.message)) {
      if (login->unread_count != 0) return wrong(want + " unread_count=0");
    } else if (const auto* batch = std::get_if<MessageBatch>(&frame.message)) {
      if (!batch->messages.empty() || batch->remaining != 0) {
        return wrong(want + " messages=[] remaining=0, as every message was acknowledged");
      }
    } else if (const auto* ok = std::get_if<SendOk>(&frame.message)) {
      if (ok->delivery != Delivery::kDelivered) {
        return wrong(want + " delivery=DELIVERED, as every recipient is logged in");
      }
      sent_[expected.message].accepted = *ok;
    }
    return "";
  }

  std::string CheckDeliveries() {
    // Each sender's messages were accepted in the order it sent them.
    std::map<int, std::uint64_t> last_id_by_sender;
    for (const SentMessage& message : sent_) {
      std::uint64_t& last = last_id_by_sender[message.sender];
      if (message.accepted->message_id <= last) {
        return clients_[message.sender]->name + ": message_id " +
               std::to_string(message.accepted->message_id) + " of \"" + message.text +
               "\" is not larger than that of its previous SEND (" + std::to_string(last) + ")";
      }
      last = message.accepted->message_id;
    }
    for (std::size_t r = 0; r < clients_.size(); ++r) {
      const SwarmClient& recipient = *clients_[r];
      std::map<int, int> last_number_by_sender;
      std::uint64_t last_id = 0;
      for (const StoredMessage& pushed : recipient.delivered) {
        const std::string shown = "DELIVER message_id=" + std::to_string(pushed.message_id) +
                                  " sender=\"" + pushed.sender + "\" text=\"" + pushed.text + "\"";
        const auto found = by_text_.find(pushed.text);
        if (found == by_text_.end()) {
          return recipient.name + " received a message nobody sent: " + shown;
        }
        SentMessage& sent = sent_[found->second];
        const std::string& sender = clients_[sent.sender]->name;
        if (static_cast<std::size_t>(sent.recipient) != r) {
          return recipient.name + " received a message for " + clients_[sent.recipient]->name +
                 ": " + shown;
        }
        if (++sent.deliveries > 1) return recipient.name + " received twice: " + shown;
        if (pushed.message_id != sent.accepted->message_id ||
            pushed.timestamp_ms != sent.accepted->timestamp_ms || pushed.sender != sender) {
          return recipient.name + " received " + shown +
                 " timestamp_ms=" + std::to_string(pushed.timestamp_ms) +
                 ", but its SEND_OK said message_id=" + std::to_string(sent.accepted->message_id) +
                 " timestamp_ms=" + std::to_string(sent.accepted->timestamp_ms) +
                 " and the sender is " + sender;
        }
        const auto previous = last_number_by_sender.find(sent.sender);
        if (previous != last_number_by_sender.end() && previous->second > sent.number) {
          return recipient.name + " received message " + std::to_string(sent.number + 1) +
                 " from " + sender + " after message " + std::to_string(previous->second + 1) +
                 ": each sender's messages must arrive in the order sent";
        }
        last_number_by_sender[sent.sender] = sent.number;
        if (acceptance_order_ && pushed.message_id < last_id) {
          return recipient.name + " received message_id " + std::to_string(pushed.message_id) +
                 " after message_id " + std::to_string(last_id) +
                 ": pushes must arrive in acceptance order (increasing message ids)";
        }
        last_id = std::max(last_id, pushed.message_id);
      }
    }
    for (const SentMessage& message : sent_) {
      if (message.deliveries == 0) {
        return clients_[message.recipient]->name + " never received \"" + message.text + "\"";
      }
    }
    return "";
  }

  const int messages_per_client_;
  const bool acceptance_order_;  // Also check that each recipient's pushes have increasing ids.
  const std::chrono::milliseconds timeout_;
  Transcript& transcript_;
  std::vector<std::unique_ptr<SwarmClient>> clients_;
  std::vector<SentMessage> sent_;
  std::map<std::string, int> by_text_;
  std::size_t delivered_ = 0;
};

}  // namespace

std::string RunSwarm(int clients, int messages, bool acceptance_order, const ClientFactory& connect,
                     std::chrono::milliseconds timeout, Transcript& transcript) {
  return Swarm(clients, messages, acceptance_order, timeout, transcript).Run(connect);
}

}  // namespace messenger::conformance
