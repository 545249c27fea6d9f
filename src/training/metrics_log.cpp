#include "flatmin/training/metrics_log.h"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "flatmin/core/error.h"

namespace flatmin::training {
namespace {

std::string csv_cell(const Record::Value& value) {
  if (const auto* d = std::get_if<double>(&value)) {
    if (!std::isfinite(*d)) return std::isnan(*d) ? "nan" : (*d > 0 ? "inf" : "-inf");
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.9g", *d);
    return buffer;
  }
  if (const auto* i = std::get_if<int64_t>(&value)) return std::to_string(*i);
  const std::string& s = std::get<std::string>(value);
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string quoted = "\"";
  for (char c : s) quoted += (c == '"') ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

}  // namespace

Record& Record::add(const std::string& name, double value) {
  fields_.emplace_back(name, value);
  return *this;
}
Record& Record::add(const std::string& name, int64_t value) {
  fields_.emplace_back(name, value);
  return *this;
}
Record& Record::add(const std::string& name, const std::string& value) {
  fields_.emplace_back(name, value);
  return *this;
}

std::string Record::to_json() const {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  for (const auto& [name, value] : fields_) {
    if (const auto* d = std::get_if<double>(&value)) j[name] = std::isfinite(*d) ? nlohmann::ordered_json(*d) : nullptr;
    else if (const auto* i = std::get_if<int64_t>(&value)) j[name] = *i;
    else j[name] = std::get<std::string>(value);
  }
  return j.dump();
}

MetricsLog::MetricsLog(const std::string& directory, const std::string& name) {
  std::error_code ec;
  std::filesystem::create_directories(directory, ec);
  check(!ec, directory + ": cannot create directory: " + ec.message());
  csv_path_ = (std::filesystem::path(directory) / (name + ".csv")).string();
  jsonl_path_ = (std::filesystem::path(directory) / (name + ".jsonl")).string();
  csv_.open(csv_path_, std::ios::trunc);
  check(csv_.good(), csv_path_ + ": cannot open for writing");
  jsonl_.open(jsonl_path_, std::ios::trunc);
  check(jsonl_.good(), jsonl_path_ + ": cannot open for writing");
}

void MetricsLog::append(const Record& record) {
  std::vector<std::string> names;
  for (const auto& field : record.fields()) names.push_back(field.first);
  if (columns_.empty()) {
    columns_ = names;
    for (size_t c = 0; c < columns_.size(); ++c) csv_ << (c ? "," : "") << columns_[c];
    csv_ << '\n';
  }
  check(names == columns_, csv_path_ + ": a row's columns differ from the header's");
  for (size_t c = 0; c < record.fields().size(); ++c) csv_ << (c ? "," : "") << csv_cell(record.fields()[c].second);
  csv_ << '\n';
  csv_.flush();
  jsonl_ << record.to_json() << '\n';
  jsonl_.flush();
  check(csv_.good() && jsonl_.good(), csv_path_ + ": write failed (disk full?)");
}

}  // namespace flatmin::training
