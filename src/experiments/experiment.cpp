#include "flatmin/experiments/experiment.h"

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>
#include <toml++/toml.h>

#include "flatmin/core/error.h"

namespace flatmin::experiments {
namespace {

using json = nlohmann::ordered_json;

json toml_to_json(const toml::node& node) {
  if (const auto* table = node.as_table()) {
    // toml++ keeps keys sorted; the file's order (of tasks and methods: the report's) is their position.
    std::vector<std::pair<std::pair<uint32_t, uint32_t>, std::string>> keys;
    for (const auto& [key, value] : *table)
      keys.push_back({{key.source().begin.line, key.source().begin.column}, std::string(key.str())});
    std::sort(keys.begin(), keys.end());
    json j = json::object();
    for (const auto& [position, key] : keys) j[key] = toml_to_json(*table->get(key));
    return j;
  }
  if (const auto* array = node.as_array()) {
    json j = json::array();
    for (const auto& value : *array) j.push_back(toml_to_json(value));
    return j;
  }
  if (const auto* v = node.as_string()) return v->get();
  if (const auto* v = node.as_integer()) return v->get();
  if (const auto* v = node.as_floating_point()) return v->get();
  if (const auto* v = node.as_boolean()) return v->get();
  throw Error("dates and times are not experiment values");
}

// One option value as `flatmin train` takes it on its command line.
std::string option_text(const json& value, const std::string& where) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_boolean()) return value.get<bool>() ? "true" : "false";
  if (value.is_number_integer()) return std::to_string(value.get<int64_t>());
  if (value.is_number()) return value.dump();  // shortest text that reads back as the same double
  throw Error(where + ": must be a string, number or boolean (write a list option such as classes as \"5,6,7\")");
}

OptionSet option_set(const json& table, const std::string& name, const std::string& where, bool axes_allowed) {
  if (!table.is_object()) throw Error(where + ": must be a table of options");
  OptionSet set;
  set.name = name;
  for (const auto& [key, value] : table.items()) {
    const std::string at = where + "." + key;
    if (!value.is_array()) {
      set.fixed.emplace_back(key, option_text(value, at));
      continue;
    }
    if (!axes_allowed) throw Error(at + ": a list (an axis) is not allowed here");
    if (value.empty()) throw Error(at + ": an axis needs at least one value");
    Axis axis{key, {}};
    for (const auto& v : value) axis.values.push_back(option_text(v, at));
    set.axes.push_back(std::move(axis));
  }
  return set;
}

std::vector<int64_t> seed_list(const json& value, const std::string& where) {
  if (!value.is_array() || value.empty()) throw Error(where + ": must be a non-empty list of seeds, e.g. [0, 1, 2]");
  std::vector<int64_t> seeds;
  std::set<int64_t> seen;
  for (const auto& v : value) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0) throw Error(where + ": seeds are integers >= 0");
    if (!seen.insert(v.get<int64_t>()).second) throw Error(where + ": seed " + v.dump() + " repeated");
    seeds.push_back(v.get<int64_t>());
  }
  return seeds;
}

std::string string_at(const json& j, const char* key, const std::string& where) {
  if (!j.contains(key)) return "";
  if (!j.at(key).is_string()) throw Error(where + "." + key + ": must be a string");
  return j.at(key).get<std::string>();
}

// ["a:b", ...]: method a against method b.
std::vector<std::pair<std::string, std::string>> method_pairs(const json& j, const std::string& where) {
  const std::string form = where + ": a list of \"method:other\" strings";
  if (!j.is_array()) throw Error(form);
  std::vector<std::pair<std::string, std::string>> pairs;
  for (const json& v : j) {
    const std::string text = v.is_string() ? v.get<std::string>() : "";
    const size_t colon = text.find(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == text.size() || text.find(':', colon + 1) != std::string::npos)
      throw Error(form + " (got " + v.dump() + ")");
    pairs.emplace_back(text.substr(0, colon), text.substr(colon + 1));
  }
  return pairs;
}

// Sets a fixed option (replacing one of that name, fixed or axis) in `set`.
void override_option(OptionSet& set, const std::string& key, const std::string& value) {
  for (auto it = set.axes.begin(); it != set.axes.end(); ++it)
    if (it->name == key) {
      set.axes.erase(it);
      break;
    }
  for (auto& [k, v] : set.fixed)
    if (k == key) {
      v = value;
      return;
    }
  set.fixed.emplace_back(key, value);
}

std::vector<OptionSet> named_sets(const json& j, const char* key, const std::string& file) {
  std::vector<OptionSet> sets;
  if (!j.contains(key)) return sets;
  if (!j.at(key).is_object() || j.at(key).empty())
    throw Error(file + ": [" + key + "] must hold named tables, e.g. [" + key + ".NAME]");
  for (const auto& [name, table] : j.at(key).items()) {
    if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
      throw Error(file + ": " + key + "." + name + ": a name is a directory name (no '/')");
    sets.push_back(option_set(table, name, file + ": " + key + "." + name, /*axes_allowed=*/true));
  }
  return sets;
}

std::vector<OptionSet*> all_sets(Experiment& e) {
  std::vector<OptionSet*> sets{&e.train};
  for (auto& t : e.tasks) sets.push_back(&t);
  for (auto& m : e.methods) sets.push_back(&m);
  return sets;
}

Experiment from_json(const json& j, const std::string& file, bool quick) {
  if (!j.is_object()) throw Error(file + ": an experiment is a table");
  static const std::set<std::string> known{"name",    "description", "command", "seeds",  "train", "pretrain",
                                           "tasks",   "methods",     "select",  "measure", "report", "quick"};
  for (const auto& [key, value] : j.items())
    if (!known.count(key))
      throw Error(file + ": unknown key '" + key +
                  "' (known: name, description, command, seeds, train, pretrain, tasks, methods, select, measure, report, quick)");
  Experiment e;
  e.file = file;
  e.name = string_at(j, "name", file + ": ");
  if (e.name.empty()) throw Error(file + ": name = \"...\" is required (it names the sweep's directory)");
  if (e.name.find('/') != std::string::npos) throw Error(file + ": name: no '/' in a name");
  e.description = string_at(j, "description", file + ": ");
  if (j.contains("command")) {
    e.command = string_at(j, "command", file + ": ");
    if (e.command != "train" && e.command != "sensing")
      throw Error(file + ": command: '" + e.command + "' is not train or sensing");
    if (e.command == "sensing" && (j.contains("pretrain") || j.contains("measure")))
      throw Error(file + ": command = \"sensing\" has no [pretrain] or [measure] (its runs measure their exact trace)");
  }
  if (j.contains("seeds")) e.seeds = seed_list(j.at("seeds"), file + ": seeds");
  if (j.contains("train")) e.train = option_set(j.at("train"), "", file + ": train", /*axes_allowed=*/true);
  if (j.contains("pretrain")) {
    json table = j.at("pretrain");
    if (table.is_object() && table.contains("seed")) {
      if (!table.at("seed").is_number_integer() || table.at("seed").get<int64_t>() < 0)
        throw Error(file + ": pretrain.seed: an integer >= 0");
      e.pretrain_seed = table.at("seed").get<int64_t>();
      table.erase("seed");
    }
    e.pretrain = option_set(table, "pretrain", file + ": pretrain", /*axes_allowed=*/false);
  }
  e.tasks = named_sets(j, "tasks", file);
  e.methods = named_sets(j, "methods", file);
  if (j.contains("select")) {
    const json& s = j.at("select");
    if (!s.is_object()) throw Error(file + ": [select] must be a table");
    Selection sel;
    if (s.contains("metric")) sel.metric = string_at(s, "metric", file + ": select");
    sel.maximize = sel.metric.find("loss") == std::string::npos;
    if (s.contains("mode")) {
      const std::string mode = string_at(s, "mode", file + ": select");
      if (mode != "max" && mode != "min") throw Error(file + ": select.mode: max or min");
      sel.maximize = mode == "max";
    }
    if (s.contains("seeds")) sel.seeds = seed_list(s.at("seeds"), file + ": select.seeds");
    if (s.contains("extend_edges")) {
      const json& x = s.at("extend_edges");
      if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() > 10)
        throw Error(file + ": select.extend_edges: a whole number from 0 to 10 (extensions per axis)");
      sel.extend_edges = x.get<int64_t>();
    }
    for (const auto& [key, value] : s.items())
      if (key != "metric" && key != "mode" && key != "seeds" && key != "extend_edges")
        throw Error(file + ": select." + key + ": unknown (known: metric, mode, seeds, extend_edges)");
    e.select = sel;
  }
  if (j.contains("measure")) e.measure = option_set(j.at("measure"), "", file + ": measure", false).fixed;
  if (j.contains("report")) {
    const json& r = j.at("report");
    if (!r.is_object()) throw Error(file + ": [report] must be a table");
    for (const auto& [key, value] : r.items()) {
      if (key == "highlight") e.highlight = string_at(r, "highlight", file + ": report");
      else if (key == "reference") e.reference = string_at(r, "reference", file + ": report");
      else if (key == "pairs") e.pairs = method_pairs(value, file + ": report.pairs");
      else throw Error(file + ": report." + key + ": unknown (known: highlight, reference, pairs)");
    }
  }
  std::vector<std::pair<const char*, const std::string*>> named{{"highlight", &e.highlight}, {"reference", &e.reference}};
  for (const auto& [a, b] : e.pairs) {
    named.push_back({"pairs", &a});
    named.push_back({"pairs", &b});
  }
  for (const auto& [key, name] : named) {
    if (name->empty()) continue;
    bool found = false;
    for (const auto& m : e.methods) found = found || m.name == *name;
    if (!found) throw Error(file + ": report." + key + ": '" + *name + "' is not one of [methods]");
  }

  if (quick) {
    if (!j.contains("quick")) throw Error(file + ": --quick: the experiment has no [quick] table");
    const json& q = j.at("quick");
    if (!q.is_object()) throw Error(file + ": [quick] must be a table");
    for (const auto& [key, value] : q.items()) {
      const std::string at = file + ": quick." + key;
      if (key == "seeds") {
        e.seeds = seed_list(value, at);
      } else if (key == "select-seeds") {
        if (e.select) e.select->seeds = seed_list(value, at);
      } else if (key == "train") {
        e.overrides = option_set(value, "", at, false).fixed;
      } else if (key == "axes") {
        if (!value.is_string() || (value.get<std::string>() != "first" && value.get<std::string>() != "all"))
          throw Error(at + ": \"first\" (each axis keeps its first value) or \"all\"");
        if (value.get<std::string>() == "first") {
          for (OptionSet* set : all_sets(e))
            for (auto& axis : set->axes) axis.values.resize(1);
        }
      } else if (key == "pretrain") {
        if (!e.pretrain) throw Error(at + ": the experiment has no [pretrain]");
        for (const auto& [k, v] : option_set(value, "", at, false).fixed) override_option(*e.pretrain, k, v);
      } else if (key == "measure") {
        if (!e.measure) throw Error(at + ": the experiment has no [measure]");
        OptionSet m{"", *e.measure, {}};
        for (const auto& [k, v] : option_set(value, "", at, false).fixed) override_option(m, k, v);
        e.measure = m.fixed;
      } else {
        throw Error(at + ": unknown (known: seeds, select-seeds, axes, train, pretrain, measure)");
      }
    }
  }
  return e;
}

json options_json(const Options& options) {
  json j = json::object();
  for (const auto& [k, v] : options) j[k] = v;
  return j;
}

json set_json(const OptionSet& set) {
  json j = options_json(set.fixed);
  for (const auto& axis : set.axes) j[axis.name] = axis.values;
  return j;
}

}  // namespace

bool Experiment::plans_same_runs_as(const std::string& stored) const {
  json earlier = json::parse(stored, nullptr, /*allow_exceptions=*/false);
  if (earlier.is_discarded() || !earlier.is_object()) return false;
  json now = json::parse(to_json());
  earlier.erase("report");
  now.erase("report");
  return earlier == now;
}

std::string Experiment::to_json(int indent) const {
  json j;
  j["name"] = name;
  j["description"] = description;
  if (command != "train") j["command"] = command;  // absent for train: older sweeps' experiment.json still match
  j["seeds"] = seeds;
  j["train"] = set_json(train);
  if (pretrain) {
    j["pretrain"] = set_json(*pretrain);
    j["pretrain"]["seed"] = pretrain_seed;
  }
  j["tasks"] = json::object();
  for (const auto& t : tasks) j["tasks"][t.name] = set_json(t);
  j["methods"] = json::object();
  for (const auto& m : methods) j["methods"][m.name] = set_json(m);
  if (select)
    j["select"] = {{"metric", select->metric}, {"mode", select->maximize ? "max" : "min"}, {"seeds", select->seeds}};
  if (select && select->extend_edges > 0) j["select"]["extend_edges"] = select->extend_edges;
  if (measure) j["measure"] = options_json(*measure);
  j["overrides"] = options_json(overrides);
  j["report"] = {{"highlight", highlight}};
  if (!reference.empty()) j["report"]["reference"] = reference;  // absent by default: older sweeps still match
  for (const auto& [a, b] : pairs) j["report"]["pairs"].push_back(a + ":" + b);
  return j.dump(indent);
}

std::string Experiment::reference_method() const {
  if (!reference.empty()) return reference;
  for (const auto& m : methods)
    if (m.name == "sgd") return m.name;
  for (const auto& m : methods)
    if (m.axes.empty() && m.fixed.size() == 1 && m.fixed[0] == std::make_pair(std::string("method"), std::string("sgd")))
      return m.name;
  return "";
}

Experiment parse_experiment(const std::string& text, const std::string& name, bool toml, bool quick) {
  json j;
  if (toml) {
    try {
      j = toml_to_json(toml::parse(text, name));
    } catch (const toml::parse_error& e) {
      const auto& where = e.source().begin;
      throw Error(name + ":" + std::to_string(where.line) + ":" + std::to_string(where.column) + ": " +
                  std::string(e.description()));
    } catch (const Error& e) {
      throw Error(name + ": " + e.what());
    }
  } else {
    try {
      j = json::parse(text);
    } catch (const json::exception& e) {
      throw Error(name + ": " + e.what());
    }
  }
  return from_json(j, name, quick);
}

Experiment load_experiment(const std::string& path, bool quick) {
  std::ifstream in(path);
  check(in.good(), path + ": cannot open the experiment file");
  std::stringstream text;
  text << in.rdbuf();
  const bool is_json = path.size() >= 5 && path.compare(path.size() - 5, 5, ".json") == 0;
  return parse_experiment(text.str(), path, !is_json, quick);
}

}  // namespace flatmin::experiments
