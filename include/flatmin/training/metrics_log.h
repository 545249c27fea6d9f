#pragma once
/// Machine-readable metrics: one row per record, appended to <dir>/<name>.csv and <dir>/<name>.jsonl and
/// flushed at once, so a run killed midway leaves every finished row readable.

#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace flatmin::training {

/// An ordered set of named values (the columns of a row).
class Record {
 public:
  using Value = std::variant<double, int64_t, std::string>;
  Record& add(const std::string& name, double value);
  Record& add(const std::string& name, int64_t value);
  Record& add(const std::string& name, int value) { return add(name, static_cast<int64_t>(value)); }
  Record& add(const std::string& name, const std::string& value);
  const std::vector<std::pair<std::string, Value>>& fields() const { return fields_; }
  /// {"name": value, ...} on one line; non-finite numbers are written as null.
  std::string to_json() const;

 private:
  std::vector<std::pair<std::string, Value>> fields_;
};

class MetricsLog {
 public:
  /// Creates `directory` if needed and truncates the two files.
  MetricsLog(const std::string& directory, const std::string& name = "metrics");
  /// Appends a row. The first row fixes the CSV columns; a later row must have the same names in the same
  /// order (throws flatmin::Error otherwise).
  void append(const Record& record);
  std::string csv_path() const { return csv_path_; }
  std::string jsonl_path() const { return jsonl_path_; }

 private:
  std::string csv_path_, jsonl_path_;
  std::ofstream csv_, jsonl_;
  std::vector<std::string> columns_;
};

}  // namespace flatmin::training
