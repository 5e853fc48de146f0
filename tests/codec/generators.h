// RapidCheck generators for the codec's messages and frames.
//
// Every message type has an Arbitrary specialization producing values the encoder must accept:
// strings are valid UTF-8 built from code points (1- to 4-byte sequences, never surrogates), empty
// now and then, occasionally exactly 65535 bytes; lists are empty or not; enums take every listed
// value; request ids follow the protocol's rule for the frame's type.
#ifndef MESSENGER_TESTS_CODEC_GENERATORS_H_
#define MESSENGER_TESTS_CODEC_GENERATORS_H_

#include <rapidcheck.h>

#include <cstddef>
#include <cstdint>
#include <limits>
#include <ostream>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "messenger/codec/codec.h"
#include "messenger/codec/messages.h"
#include "messenger/codec/status.h"

namespace messenger {

// Counterexamples print as the spec's one-line form rather than RapidCheck's "<???>".
inline void showValue(const Frame& frame, std::ostream& os) { os << Describe(frame); }
inline void showValue(const Message& message, std::ostream& os) {
  os << Describe(Frame{0, message});
}
inline void showValue(const Status& status, std::ostream& os) { os << status.ToString(); }
inline void showValue(ErrorCode code, std::ostream& os) { os << ErrorCodeName(code); }

namespace testgen {

// Longest string a u16 length prefix can carry.
inline constexpr std::size_t kMaxStringBytes = 0xFFFF;

// Appends the UTF-8 form of `cp`. REQUIRES: cp <= 0x10FFFF and cp is not a surrogate.
// Written here rather than borrowed from the codec so that the tests do not trust what they test.
inline void AppendUtf8(std::string& out, std::uint32_t cp) {
  const auto byte = [&out](std::uint32_t v) { out.push_back(static_cast<char>(v)); };
  if (cp < 0x80) {
    byte(cp);
  } else if (cp < 0x800) {
    byte(0xC0 | (cp >> 6));
    byte(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    byte(0xE0 | (cp >> 12));
    byte(0x80 | ((cp >> 6) & 0x3F));
    byte(0x80 | (cp & 0x3F));
  } else {
    byte(0xF0 | (cp >> 18));
    byte(0x80 | ((cp >> 12) & 0x3F));
    byte(0x80 | ((cp >> 6) & 0x3F));
    byte(0x80 | (cp & 0x3F));
  }
}

// Uniform over [min, max) at every RapidCheck size. gen::inRange alone narrows the range while
// the size is small, which would keep most of Unicode and of the integers out of early cases.
template <typename T>
rc::Gen<T> UniformInRange(T min, T max) {
  return rc::gen::resize(rc::kNominalSize, rc::gen::inRange<T>(min, max));
}

// Any Unicode scalar value, weighted towards ASCII, with the encoding-length boundaries and the
// values around the surrogate gap picked out explicitly.
inline rc::Gen<std::uint32_t> GenCodePoint() {
  const auto range = UniformInRange<std::uint32_t>;
  return rc::gen::weightedOneOf<std::uint32_t>({
      {6, range(0x20, 0x7F)},  // Printable ASCII.
      {1, range(0x00, 0x80)},  // Any ASCII, NUL and controls included.
      {2, range(0x80, 0x800)},
      {2, rc::gen::oneOf(range(0x800, 0xD800), range(0xE000, 0x10000))},
      {2, range(0x10000, 0x110000)},
      {1, rc::gen::element<std::uint32_t>(0x7F, 0x80, 0x7FF, 0x800, 0xD7FF, 0xE000, 0xFFFD, 0xFFFF,
                                          0x10000, 0x10FFFF)},
  });
}

inline std::string FromCodePoints(const std::vector<std::uint32_t>& code_points) {
  std::string out;
  for (const std::uint32_t cp : code_points) AppendUtf8(out, cp);
  return out;
}

// Short valid UTF-8 (length grows with RapidCheck's size), possibly empty.
inline rc::Gen<std::string> GenShortUtf8() {
  return rc::gen::map(rc::gen::container<std::vector<std::uint32_t>>(GenCodePoint()),
                      FromCodePoints);
}

// Valid UTF-8 of exactly kMaxStringBytes bytes: a non-empty seed repeated, padded with ASCII.
// Built in one step because generating 65535 code points one by one would dominate the run time.
inline rc::Gen<std::string> GenMaxLengthUtf8() {
  return rc::gen::map(rc::gen::pair(GenCodePoint(), GenShortUtf8()),
                      [](const std::pair<std::uint32_t, std::string>& seed_parts) {
                        std::string seed;
                        AppendUtf8(seed, seed_parts.first);
                        seed += seed_parts.second;
                        std::string out;
                        while (out.size() + seed.size() <= kMaxStringBytes) out += seed;
                        out.append(kMaxStringBytes - out.size(), 'z');
                        return out;
                      });
}

// A string field of a message: empty, short, or now and then the longest the wire allows.
inline rc::Gen<std::string> GenUtf8String() {
  return rc::gen::weightedOneOf<std::string>({
      {2, rc::gen::just(std::string())},
      {17, GenShortUtf8()},
      {1, GenMaxLengthUtf8()},
  });
}

// A string inside a list: never maximal, so that a list of them stays a reasonable size.
inline rc::Gen<std::string> GenListItemString() {
  return rc::gen::weightedOneOf<std::string>({
      {1, rc::gen::just(std::string())},
      {6, GenShortUtf8()},
  });
}

// Unsigned integers with both extremes likely, small values common and the full range reachable.
template <typename T>
rc::Gen<T> GenUnsigned() {
  return rc::gen::weightedOneOf<T>({
      {1, rc::gen::element<T>(0, std::numeric_limits<T>::max())},
      {3, rc::gen::arbitrary<T>()},
      {2, UniformInRange<T>(0, std::numeric_limits<T>::max())},
  });
}

// A list of `item`, empty a good part of the time.
template <typename T>
rc::Gen<std::vector<T>> GenList(rc::Gen<T> item) {
  return rc::gen::weightedOneOf<std::vector<T>>({
      {1, rc::gen::just(std::vector<T>())},
      {4, rc::gen::container<std::vector<T>>(std::move(item))},
  });
}

// Every code the protocol lists (kOk is not one), found by asking the codec which u16 values it
// knows, so a code added there is generated here too.
inline rc::Gen<ErrorCode> GenErrorCode() {
  static const std::vector<ErrorCode> codes = [] {
    std::vector<ErrorCode> known;
    for (std::uint32_t v = 1; v <= 0xFFFF; ++v) {
      if (IsKnownErrorCode(static_cast<std::uint16_t>(v))) {
        known.push_back(static_cast<ErrorCode>(v));
      }
    }
    return known;
  }();
  return rc::gen::elementOf(codes);
}

inline rc::Gen<StoredMessage> GenStoredMessage(const rc::Gen<std::string>& strings) {
  return rc::gen::build<StoredMessage>(
      rc::gen::set(&StoredMessage::message_id, GenUnsigned<std::uint64_t>()),
      rc::gen::set(&StoredMessage::sender, strings),
      rc::gen::set(&StoredMessage::timestamp_ms, GenUnsigned<std::uint64_t>()),
      rc::gen::set(&StoredMessage::text, strings));
}

// A request id the protocol allows for `type`: non-zero for requests and responses, zero for
// pushes, either for ERROR (zero meaning a connection-level error).
inline rc::Gen<std::uint32_t> GenRequestIdFor(MessageType type) {
  const auto non_zero = rc::gen::weightedOneOf<std::uint32_t>({
      {1, rc::gen::element<std::uint32_t>(1, 0xFFFFFFFF)},
      {4, UniformInRange<std::uint32_t>(1, 0xFFFFFFFF)},
  });
  if (IsPush(type)) return rc::gen::just(std::uint32_t{0});
  if (type == MessageType::kError) {
    return rc::gen::weightedOneOf<std::uint32_t>(
        {{1, rc::gen::just(std::uint32_t{0})}, {2, non_zero}});
  }
  return non_zero;
}

}  // namespace testgen
}  // namespace messenger

namespace rc {

template <>
struct Arbitrary<messenger::Hello> {
  static Gen<messenger::Hello> arbitrary() {
    using messenger::Hello;
    return gen::build<Hello>(
        gen::set(&Hello::protocol_version, messenger::testgen::GenUnsigned<std::uint16_t>()));
  }
};

template <>
struct Arbitrary<messenger::CreateAccount> {
  static Gen<messenger::CreateAccount> arbitrary() {
    using messenger::CreateAccount;
    return gen::build<CreateAccount>(
        gen::set(&CreateAccount::username, messenger::testgen::GenUtf8String()),
        gen::set(&CreateAccount::password, messenger::testgen::GenUtf8String()));
  }
};

template <>
struct Arbitrary<messenger::Login> {
  static Gen<messenger::Login> arbitrary() {
    using messenger::Login;
    return gen::build<Login>(gen::set(&Login::username, messenger::testgen::GenUtf8String()),
                             gen::set(&Login::password, messenger::testgen::GenUtf8String()));
  }
};

template <>
struct Arbitrary<messenger::Logout> {
  static Gen<messenger::Logout> arbitrary() { return gen::just(messenger::Logout{}); }
};

template <>
struct Arbitrary<messenger::ListAccounts> {
  static Gen<messenger::ListAccounts> arbitrary() {
    using messenger::ListAccounts;
    return gen::build<ListAccounts>(
        gen::set(&ListAccounts::pattern, messenger::testgen::GenUtf8String()),
        gen::set(&ListAccounts::cursor, messenger::testgen::GenUtf8String()),
        gen::set(&ListAccounts::limit, messenger::testgen::GenUnsigned<std::uint16_t>()));
  }
};

template <>
struct Arbitrary<messenger::Send> {
  static Gen<messenger::Send> arbitrary() {
    using messenger::Send;
    return gen::build<Send>(
        gen::set(&Send::recipient, messenger::testgen::GenUtf8String()),
        gen::set(&Send::client_message_id, messenger::testgen::GenUnsigned<std::uint64_t>()),
        gen::set(&Send::text, messenger::testgen::GenUtf8String()));
  }
};

template <>
struct Arbitrary<messenger::FetchUndelivered> {
  static Gen<messenger::FetchUndelivered> arbitrary() {
    using messenger::FetchUndelivered;
    return gen::build<FetchUndelivered>(
        gen::set(&FetchUndelivered::limit, messenger::testgen::GenUnsigned<std::uint16_t>()));
  }
};

template <>
struct Arbitrary<messenger::Ack> {
  static Gen<messenger::Ack> arbitrary() {
    using messenger::Ack;
    return gen::build<Ack>(
        gen::set(&Ack::message_ids,
                 messenger::testgen::GenList(messenger::testgen::GenUnsigned<std::uint64_t>())));
  }
};

template <>
struct Arbitrary<messenger::DeleteAccount> {
  static Gen<messenger::DeleteAccount> arbitrary() {
    using messenger::DeleteAccount;
    return gen::build<DeleteAccount>(gen::set(&DeleteAccount::confirm, gen::element(false, true)));
  }
};

template <>
struct Arbitrary<messenger::Ping> {
  static Gen<messenger::Ping> arbitrary() {
    using messenger::Ping;
    return gen::build<Ping>(
        gen::set(&Ping::nonce, messenger::testgen::GenUnsigned<std::uint64_t>()));
  }
};

template <>
struct Arbitrary<messenger::HelloOk> {
  static Gen<messenger::HelloOk> arbitrary() {
    using messenger::HelloOk;
    using messenger::testgen::GenUnsigned;
    return gen::build<HelloOk>(
        gen::set(&HelloOk::protocol_version, GenUnsigned<std::uint16_t>()),
        gen::set(&HelloOk::max_frame_size, GenUnsigned<std::uint32_t>()),
        gen::set(&HelloOk::max_prelogin_frame_size, GenUnsigned<std::uint32_t>()),
        gen::set(&HelloOk::max_text_bytes, GenUnsigned<std::uint32_t>()),
        gen::set(&HelloOk::max_queued_per_user, GenUnsigned<std::uint32_t>()),
        gen::set(&HelloOk::server_name, messenger::testgen::GenUtf8String()));
  }
};

template <>
struct Arbitrary<messenger::Ok> {
  static Gen<messenger::Ok> arbitrary() { return gen::just(messenger::Ok{}); }
};

template <>
struct Arbitrary<messenger::LoginOk> {
  static Gen<messenger::LoginOk> arbitrary() {
    using messenger::LoginOk;
    return gen::build<LoginOk>(
        gen::set(&LoginOk::unread_count, messenger::testgen::GenUnsigned<std::uint32_t>()));
  }
};

template <>
struct Arbitrary<messenger::AccountList> {
  static Gen<messenger::AccountList> arbitrary() {
    using messenger::AccountList;
    return gen::build<AccountList>(
        gen::set(&AccountList::usernames,
                 messenger::testgen::GenList(messenger::testgen::GenListItemString())),
        gen::set(&AccountList::next_cursor, messenger::testgen::GenUtf8String()));
  }
};

template <>
struct Arbitrary<messenger::SendOk> {
  static Gen<messenger::SendOk> arbitrary() {
    using messenger::Delivery;
    using messenger::SendOk;
    return gen::build<SendOk>(
        gen::set(&SendOk::message_id, messenger::testgen::GenUnsigned<std::uint64_t>()),
        gen::set(&SendOk::timestamp_ms, messenger::testgen::GenUnsigned<std::uint64_t>()),
        gen::set(&SendOk::delivery, gen::element(Delivery::kQueued, Delivery::kDelivered)));
  }
};

template <>
struct Arbitrary<messenger::StoredMessage> {
  static Gen<messenger::StoredMessage> arbitrary() {
    return messenger::testgen::GenStoredMessage(messenger::testgen::GenUtf8String());
  }
};

template <>
struct Arbitrary<messenger::MessageBatch> {
  static Gen<messenger::MessageBatch> arbitrary() {
    using messenger::MessageBatch;
    using messenger::testgen::GenStoredMessage;
    return gen::build<MessageBatch>(
        gen::set(&MessageBatch::messages, messenger::testgen::GenList(GenStoredMessage(
                                              messenger::testgen::GenListItemString()))),
        gen::set(&MessageBatch::remaining, messenger::testgen::GenUnsigned<std::uint32_t>()));
  }
};

template <>
struct Arbitrary<messenger::ConfirmRequired> {
  static Gen<messenger::ConfirmRequired> arbitrary() {
    using messenger::ConfirmRequired;
    return gen::build<ConfirmRequired>(
        gen::set(&ConfirmRequired::unread_count, messenger::testgen::GenUnsigned<std::uint32_t>()));
  }
};

template <>
struct Arbitrary<messenger::Pong> {
  static Gen<messenger::Pong> arbitrary() {
    using messenger::Pong;
    return gen::build<Pong>(
        gen::set(&Pong::nonce, messenger::testgen::GenUnsigned<std::uint64_t>()));
  }
};

template <>
struct Arbitrary<messenger::Error> {
  static Gen<messenger::Error> arbitrary() {
    using messenger::Error;
    return gen::build<Error>(gen::set(&Error::code, messenger::testgen::GenErrorCode()),
                             gen::set(&Error::message, messenger::testgen::GenUtf8String()));
  }
};

template <>
struct Arbitrary<messenger::Deliver> {
  static Gen<messenger::Deliver> arbitrary() {
    using messenger::Deliver;
    return gen::build<Deliver>(
        gen::set(&Deliver::message, gen::arbitrary<messenger::StoredMessage>()));
  }
};

template <>
struct Arbitrary<messenger::SessionEnded> {
  static Gen<messenger::SessionEnded> arbitrary() {
    using messenger::EndReason;
    using messenger::SessionEnded;
    return gen::build<SessionEnded>(
        gen::set(&SessionEnded::reason,
                 gen::element(EndReason::kTakeover, EndReason::kServerShutdown,
                              EndReason::kIdleTimeout, EndReason::kLoginTimeout)),
        gen::set(&SessionEnded::message, messenger::testgen::GenUtf8String()));
  }
};

}  // namespace rc

namespace messenger::testgen {

// One generator per alternative of Message, in variant order. Instantiating Arbitrary for every
// alternative means a new message type does not compile here until it has a generator.
template <std::size_t... I>
std::vector<rc::Gen<Message>> MessageGensFor(std::index_sequence<I...>) {
  return {rc::gen::cast<Message>(rc::gen::arbitrary<std::variant_alternative_t<I, Message>>())...};
}

inline const std::vector<rc::Gen<Message>>& MessageGens() {
  static const std::vector<rc::Gen<Message>> gens =
      MessageGensFor(std::make_index_sequence<std::variant_size_v<Message>>());
  return gens;
}

// Frames whose message comes from `messages`, with a request id valid for its type.
inline rc::Gen<Frame> GenFrameFrom(rc::Gen<Message> messages) {
  return rc::gen::mapcat(std::move(messages), [](Message message) {
    const MessageType type = TypeOf(message);
    return rc::gen::map(GenRequestIdFor(type), [message = std::move(message)](std::uint32_t id) {
      return Frame{id, message};
    });
  });
}

// Frames of the message type at variant index `index`.
inline rc::Gen<Frame> GenFrameOfIndex(std::size_t index) {
  return GenFrameFrom(MessageGens().at(index));
}

// Frames of any message type, each type equally likely.
inline rc::Gen<Frame> GenFrame() {
  return rc::gen::mapcat(UniformInRange<std::size_t>(0, std::variant_size_v<Message>),
                         GenFrameOfIndex);
}

}  // namespace messenger::testgen

namespace rc {

template <>
struct Arbitrary<messenger::Frame> {
  static Gen<messenger::Frame> arbitrary() { return messenger::testgen::GenFrame(); }
};

}  // namespace rc

#endif  // MESSENGER_TESTS_CODEC_GENERATORS_H_
