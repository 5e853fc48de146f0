// A strict reader of the Prometheus text exposition format 0.0.4, for tests: it checks every
// line of an exposition and the rules a scraper relies on, and returns the samples.
//
// Checked: the text ends with a newline and has no blank lines; `# HELP name text` and
// `# TYPE name type` are well formed (HELP escapes only \\ and \n), at most one of each per
// family, TYPE before the family's first sample; other `#` lines are comments. A sample is
// `name{label="value",...} value` with valid names, label values escaped (\\, \", \n), a
// parseable value and no timestamp; every sample belongs to a family with a TYPE (a histogram's
// _bucket, _sum and _count belong to it); a family's samples are contiguous; no series appears
// twice. Histograms: every series has ascending `le` buckets with non-decreasing counts, a
// le="+Inf" bucket equal to its _count, and a _sum.
#ifndef MESSENGER_TESTS_SERVER_PROMETHEUS_TEXT_H_
#define MESSENGER_TESTS_SERVER_PROMETHEUS_TEXT_H_

#include <cmath>
#include <cstdlib>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace messenger::test {

struct PromSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct PromExposition {
  std::map<std::string, std::string> types;  // Family -> counter, gauge, histogram, ...
  std::map<std::string, std::string> help;   // Family -> unescaped HELP text.
  std::vector<PromSample> samples;           // In order.

  // The value of the series `name` with exactly `labels`, or nullopt.
  std::optional<double> Value(const std::string& name,
                              const std::map<std::string, std::string>& labels = {}) const {
    for (const PromSample& sample : samples) {
      if (sample.name == name && sample.labels == labels) return sample.value;
    }
    return std::nullopt;
  }

  // "name{a="x",b="y"}" (labels sorted): a key naming one series.
  static std::string Key(const PromSample& sample) {
    std::string key = sample.name + "{";
    bool first = true;
    for (const auto& [label, value] : sample.labels) {
      key += (first ? "" : ",") + label + "=\"" + value + "\"";
      first = false;
    }
    return key + "}";
  }
};

namespace prom_detail {

inline bool IsMetricName(std::string_view name) {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

inline bool IsLabelName(std::string_view name) {
  return IsMetricName(name) && name.find(':') == std::string_view::npos;
}

inline std::optional<double> ParseValue(const std::string& text) {
  if (text == "+Inf" || text == "Inf") return std::numeric_limits<double>::infinity();
  if (text == "-Inf") return -std::numeric_limits<double>::infinity();
  if (text == "NaN") return std::numeric_limits<double>::quiet_NaN();
  if (text.empty()) return std::nullopt;
  char* end = nullptr;
  const double value = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size()) return std::nullopt;
  return value;
}

// The family `sample_name` belongs to, given the TYPEs seen so far; "" if none.
inline std::string FamilyOf(const std::string& sample_name,
                            const std::map<std::string, std::string>& types) {
  if (types.count(sample_name)) return sample_name;
  for (const std::string_view suffix : {"_bucket", "_sum", "_count"}) {
    if (sample_name.size() > suffix.size() &&
        sample_name.compare(sample_name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      const std::string base = sample_name.substr(0, sample_name.size() - suffix.size());
      const auto it = types.find(base);
      if (it != types.end() &&
          (it->second == "histogram" || (it->second == "summary" && suffix != "_bucket"))) {
        return base;
      }
    }
  }
  return "";
}

}  // namespace prom_detail

// Parses `text` into `out`. Returns nullopt if it is valid, else the first problem found with
// its line number.
inline std::optional<std::string> ParsePrometheusText(std::string_view text, PromExposition& out) {
  using namespace prom_detail;
  if (text.empty()) return "empty exposition";
  if (text.back() != '\n') return "the text does not end with a newline";
  std::set<std::string> finished;  // Families whose samples are over.
  std::string current;             // The family whose samples are being read.
  std::set<std::string> series;
  std::size_t line_no = 0;
  std::size_t start = 0;
  while (start < text.size()) {
    const std::size_t end = text.find('\n', start);
    const std::string line(text.substr(start, end - start));
    start = end + 1;
    ++line_no;
    const auto fail = [&](const std::string& why) {
      return "line " + std::to_string(line_no) + " '" + line + "': " + why;
    };
    if (line.empty()) return fail("blank line");
    if (line[0] == '#') {
      const bool help = line.rfind("# HELP ", 0) == 0;
      const bool type = line.rfind("# TYPE ", 0) == 0;
      if (!help && !type) continue;  // A plain comment.
      const std::string rest = line.substr(7);
      const std::size_t space = rest.find(' ');
      if (space == std::string::npos) return fail("no text after the metric name");
      const std::string name = rest.substr(0, space);
      const std::string tail = rest.substr(space + 1);
      if (!IsMetricName(name)) return fail("invalid metric name");
      if (help) {
        if (out.help.count(name)) return fail("second HELP for the family");
        std::string unescaped;
        for (std::size_t i = 0; i < tail.size(); ++i) {
          if (tail[i] != '\\') {
            unescaped += tail[i];
            continue;
          }
          if (++i == tail.size()) return fail("HELP ends in a lone backslash");
          if (tail[i] == '\\') {
            unescaped += '\\';
          } else if (tail[i] == 'n') {
            unescaped += '\n';
          } else {
            return fail("invalid escape in HELP");
          }
        }
        out.help[name] = unescaped;
      } else {
        if (out.types.count(name)) return fail("second TYPE for the family");
        if (tail != "counter" && tail != "gauge" && tail != "histogram" && tail != "summary" &&
            tail != "untyped") {
          return fail("unknown type");
        }
        for (const PromSample& sample : out.samples) {
          if (FamilyOf(sample.name, {{name, tail}}) == name) {
            return fail("TYPE after a sample of the family");
          }
        }
        out.types[name] = tail;
      }
      continue;
    }

    PromSample sample;
    std::size_t i = 0;
    while (i < line.size() && line[i] != '{' && line[i] != ' ') ++i;
    sample.name = line.substr(0, i);
    if (!IsMetricName(sample.name)) return fail("invalid metric name");
    if (i < line.size() && line[i] == '{') {
      ++i;
      while (true) {
        if (i < line.size() && line[i] == '}') {
          ++i;
          break;
        }
        const std::size_t eq = line.find('=', i);
        if (eq == std::string::npos) return fail("label without '='");
        const std::string label = line.substr(i, eq - i);
        if (!IsLabelName(label)) return fail("invalid label name '" + label + "'");
        i = eq + 1;
        if (i >= line.size() || line[i] != '"') return fail("label value not quoted");
        ++i;
        std::string value;
        bool closed = false;
        while (i < line.size()) {
          const char c = line[i++];
          if (c == '"') {
            closed = true;
            break;
          }
          if (c != '\\') {
            value += c;
            continue;
          }
          if (i >= line.size()) return fail("label value ends in a lone backslash");
          const char e = line[i++];
          if (e == '\\') {
            value += '\\';
          } else if (e == '"') {
            value += '"';
          } else if (e == 'n') {
            value += '\n';
          } else {
            return fail("invalid escape in a label value");
          }
        }
        if (!closed) return fail("unterminated label value");
        if (!sample.labels.emplace(label, value).second) return fail("label given twice");
        if (i < line.size() && line[i] == ',') {
          ++i;
        } else if (i >= line.size() || line[i] != '}') {
          return fail("expected ',' or '}' after a label");
        }
      }
    }
    if (i >= line.size() || line[i] != ' ') return fail("expected a space before the value");
    const std::string value_text = line.substr(i + 1);
    if (value_text.find(' ') != std::string::npos) return fail("a timestamp or trailing text");
    const std::optional<double> value = ParseValue(value_text);
    if (!value) return fail("unparseable value '" + value_text + "'");
    sample.value = *value;

    const std::string family = FamilyOf(sample.name, out.types);
    if (family.empty()) return fail("no TYPE for this sample's family");
    if (family != current) {
      if (finished.count(family)) return fail("the family's samples are not contiguous");
      if (!current.empty()) finished.insert(current);
      current = family;
    }
    if (!series.insert(PromExposition::Key(sample)).second) return fail("duplicate series");
    out.samples.push_back(std::move(sample));
  }

  // Histogram invariants, per series (labels without `le`).
  for (const auto& [family, type] : out.types) {
    if (type != "histogram") continue;
    std::map<std::map<std::string, std::string>, std::vector<std::pair<double, double>>> buckets;
    std::map<std::map<std::string, std::string>, double> counts;
    std::set<std::map<std::string, std::string>> sums;
    for (const PromSample& sample : out.samples) {
      std::map<std::string, std::string> labels = sample.labels;
      if (sample.name == family + "_bucket") {
        const auto le = labels.find("le");
        if (le == labels.end()) return family + ": a bucket without le";
        const std::optional<double> bound = ParseValue(le->second);
        if (!bound || std::isnan(*bound)) return family + ": bad le '" + le->second + "'";
        labels.erase(le);
        buckets[labels].emplace_back(*bound, sample.value);
      } else if (sample.name == family + "_count") {
        counts[labels] = sample.value;
      } else if (sample.name == family + "_sum") {
        sums.insert(labels);
      }
    }
    if (buckets.empty()) return family + ": a histogram without buckets";
    for (const auto& [labels, list] : buckets) {
      for (std::size_t k = 1; k < list.size(); ++k) {
        if (!(list[k].first > list[k - 1].first)) return family + ": le not ascending";
        if (list[k].second < list[k - 1].second) return family + ": buckets not cumulative";
      }
      if (!std::isinf(list.back().first)) return family + ": no le=\"+Inf\" bucket";
      const auto count = counts.find(labels);
      if (count == counts.end()) return family + ": no _count";
      if (count->second != list.back().second) return family + ": +Inf bucket != _count";
      if (!sums.count(labels)) return family + ": no _sum";
    }
  }
  return std::nullopt;
}

}  // namespace messenger::test

#endif  // MESSENGER_TESTS_SERVER_PROMETHEUS_TEXT_H_
