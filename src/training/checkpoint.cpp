#include "flatmin/training/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/archive.h>
#include <zlib.h>

#include "flatmin/core/error.h"
#include "flatmin/core/stop_points.h"
#include "flatmin/models/scripted.h"

namespace flatmin::training {
namespace {

constexpr char kMagic[8] = {'F', 'L', 'A', 'T', 'M', 'I', 'N', 'C'};
constexpr size_t kHeaderBytes = 8 + 4 + 8 + 4;

void put_u32(std::string& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
void put_u64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
uint64_t get_le(const unsigned char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

uint32_t crc32_of(const unsigned char* data, size_t size) {
  uLong crc = crc32(0L, Z_NULL, 0);
  while (size > 0) {  // zlib takes uInt lengths
    const uInt chunk = static_cast<uInt>(std::min<size_t>(size, 1u << 30));
    crc = crc32(crc, data, chunk);
    data += chunk;
    size -= chunk;
  }
  return static_cast<uint32_t>(crc);
}

std::string spec_to_json(const models::ModelSpec& s) {
  nlohmann::json j{{"name", s.name()},
                   {"in_channels", s.in_channels()},
                   {"image_size", s.image_size()},
                   {"num_classes", s.num_classes()},
                   {"width", s.width()}};
  if (!s.file().empty()) j["file"] = s.file();
  if (s.activation() != "relu") j["activation"] = s.activation();  // a ReLU checkpoint stays as it was
  return j.dump();
}

models::ModelSpec spec_from_json(const std::string& text, const std::string& name) {
  try {
    const auto j = nlohmann::json::parse(text);
    return models::ModelSpec()
        .name(j.at("name").get<std::string>())
        .in_channels(j.at("in_channels").get<int64_t>())
        .image_size(j.at("image_size").get<int64_t>())
        .num_classes(j.at("num_classes").get<int64_t>())
        .width(j.at("width").get<int64_t>())
        .file(j.value("file", std::string()))
        .activation(j.value("activation", std::string("relu")));
  } catch (const nlohmann::json::exception& e) {
    throw Error(name + ": bad model spec in checkpoint: " + e.what());
  }
}

// Writes `bytes` to `path` via a temporary file, fsync and rename: a crash leaves the old file or the new
// one, never half of one.
void write_atomically(const std::string& path, const std::string& bytes) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  check(fd >= 0, tmp + ": cannot open for writing: " + std::strerror(errno));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string reason = std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      throw Error(tmp + ": write failed: " + reason);
    }
    done += static_cast<size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  ::close(fd);
  stop_point("checkpoint");  // a kill here leaves the temporary file and the previous checkpoints
  if (!synced || std::rename(tmp.c_str(), path.c_str()) != 0) {
    const std::string reason = std::strerror(errno);
    ::unlink(tmp.c_str());
    throw Error(path + ": cannot write checkpoint: " + reason);
  }
}

// The payload of a valid file, after the header checks.
std::pair<const unsigned char*, size_t> payload_of(const unsigned char* bytes, size_t size, const std::string& name) {
  check(size >= kHeaderBytes, name + ": not a flatmin checkpoint (only " + std::to_string(size) + " bytes)");
  check(std::memcmp(bytes, kMagic, sizeof kMagic) == 0, name + ": not a flatmin checkpoint (bad magic)");
  const uint32_t version = static_cast<uint32_t>(get_le(bytes + 8, 4));
  check(version == kCheckpointVersion, name + ": unsupported checkpoint version " + std::to_string(version) +
                                           " (this flatmin reads version " + std::to_string(kCheckpointVersion) + ")");
  const uint64_t length = get_le(bytes + 12, 8);
  const uint32_t crc = static_cast<uint32_t>(get_le(bytes + 20, 4));
  const size_t available = size - kHeaderBytes;
  check(length <= available, name + ": truncated: expected " + std::to_string(length) + " payload bytes, found " +
                                 std::to_string(available));
  check(length == available, name + ": trailing bytes after the payload");
  const unsigned char* payload = bytes + kHeaderBytes;
  check(crc32_of(payload, length) == crc, name + ": checksum mismatch: the file is corrupted");
  return {payload, length};
}

std::vector<unsigned char> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  check(in.good(), path + ": cannot open checkpoint");
  std::vector<unsigned char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  check(!in.bad(), path + ": read failed");
  return bytes;
}

// Every tensor is read onto `device`, whatever device wrote it (map_location): a checkpoint written on a GPU
// opens on the CPU and the other way round.
torch::serialize::InputArchive open_archive(const unsigned char* payload, size_t length, const std::string& name,
                                            const c10::Device& device = c10::Device(c10::DeviceType::CPU)) {
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(reinterpret_cast<const char*>(payload), length, device);
  } catch (const c10::Error& e) {
    throw Error(name + ": unreadable checkpoint payload: " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    // TorchScript's parser reports a damaged archive with std::runtime_error (found by fuzzing: a payload
    // whose checksum the fuzzer matched).
    throw Error(name + ": unreadable checkpoint payload: " + first_line(e.what()));
  }
  return archive;
}

}  // namespace

void save_checkpoint(const std::string& path, const models::ModelSpec& spec, const models::Model& model,
                     const std::string& config_json, const at::Tensor& channel_mean, const at::Tensor& channel_std,
                     int64_t epoch, const torch::optim::Optimizer* optimizer, const TrainerState* trainer_state) {
  check(static_cast<bool>(model), path + ": cannot checkpoint an empty model");
  torch::serialize::OutputArchive archive;
  archive.write("format", c10::IValue(std::string("flatmin-checkpoint")));
  archive.write("model_spec", c10::IValue(spec_to_json(spec)));
  archive.write("config", c10::IValue(config_json));
  archive.write("epoch", c10::IValue(epoch));
  if (channel_mean.defined()) archive.write("channel_mean", channel_mean);
  if (channel_std.defined()) archive.write("channel_std", channel_std);
  torch::serialize::OutputArchive model_archive(archive.compilation_unit());
  model.module()->save(model_archive);
  archive.write("model", model_archive);
  if (const models::ScriptedModuleImpl* scripted = models::as_scripted(model)) {
    // The architecture travels with the weights: the checkpoint opens without the original file.
    const std::string& source = scripted->source();
    archive.write("script_module", at::from_blob(const_cast<char*>(source.data()), {static_cast<int64_t>(source.size())},
                                                 at::TensorOptions().dtype(at::kByte))
                                       .clone());
  }
  if (optimizer) {
    torch::serialize::OutputArchive optimizer_archive(archive.compilation_unit());
    optimizer->save(optimizer_archive);
    archive.write("optimizer", optimizer_archive);
  }
  if (trainer_state) {
    torch::serialize::OutputArchive state_archive(archive.compilation_unit());
    trainer_state->save(state_archive);
    archive.write("trainer", state_archive);
  }
  std::ostringstream payload_stream;
  archive.save_to(payload_stream);
  const std::string payload = payload_stream.str();

  std::string bytes(kMagic, sizeof kMagic);
  put_u32(bytes, kCheckpointVersion);
  put_u64(bytes, payload.size());
  put_u32(bytes, crc32_of(reinterpret_cast<const unsigned char*>(payload.data()), payload.size()));
  bytes += payload;
  write_atomically(path, bytes);
}

CheckpointContents parse_checkpoint(const unsigned char* bytes, size_t size, const std::string& name) {
  const auto [payload, length] = payload_of(bytes, size, name);
  torch::serialize::InputArchive archive = open_archive(payload, length, name);
  try {
    CheckpointContents c;
    c10::IValue spec, config, epoch;
    archive.read("model_spec", spec);
    archive.read("config", config);
    archive.read("epoch", epoch);
    check(spec.isString() && config.isString() && epoch.isInt(), name + ": malformed checkpoint fields");
    c.spec = spec_from_json(spec.toStringRef(), name);
    c.config_json = config.toStringRef();
    c.epoch = epoch.toInt();
    c.payload_crc32 = static_cast<uint32_t>(get_le(bytes + 20, 4));  // verified by payload_of
    archive.try_read("channel_mean", c.channel_mean);
    archive.try_read("channel_std", c.channel_std);
    at::Tensor script;
    if (archive.try_read("script_module", script)) {
      check(script.scalar_type() == at::kByte && script.dim() == 1, name + ": malformed script_module");
      const at::Tensor bytes = script.contiguous();
      c.model = models::load_scripted_model_bytes(
          std::string(static_cast<const char*>(bytes.data_ptr()), static_cast<size_t>(bytes.numel())),
          name + " (its TorchScript model)");
    } else {
      c.model = models::make_model(c.spec);
    }
    torch::serialize::InputArchive model_archive;
    archive.read("model", model_archive);
    c.model.module()->load(model_archive);
    torch::serialize::InputArchive state_archive;
    if (archive.try_read("trainer", state_archive)) {
      c.trainer_state.emplace();
      c.trainer_state->load(state_archive);
    }
    return c;
  } catch (const c10::Error& e) {
    throw Error(name + ": checkpoint does not match its model: " + e.what_without_backtrace());
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(name + ": malformed checkpoint: " + first_line(e.what()));
  }
}

namespace {
std::vector<double> as_values(const at::Tensor& t) {
  if (!t.defined()) return {};
  const at::Tensor d = t.to(at::kDouble).contiguous();
  return std::vector<double>(d.data_ptr<double>(), d.data_ptr<double>() + d.numel());
}
}  // namespace

std::vector<double> CheckpointContents::mean_values() const { return as_values(channel_mean); }
std::vector<double> CheckpointContents::std_values() const { return as_values(channel_std); }

std::string CheckpointContents::checksum() const {
  char hex[9];
  std::snprintf(hex, sizeof hex, "%08x", static_cast<unsigned>(payload_crc32));
  return hex;
}

void verify_checkpoint(const std::string& path) {
  const std::vector<unsigned char> bytes = read_file(path);
  payload_of(bytes.data(), bytes.size(), path);
}

std::vector<std::string> list_step_checkpoints(const std::string& dir) {
  std::vector<std::pair<long long, std::string>> found;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() > 10 && name.rfind("step-", 0) == 0 && name.compare(name.size() - 5, 5, ".ckpt") == 0) {
      const std::string digits = name.substr(5, name.size() - 10);
      if (!digits.empty() && digits.find_first_not_of("0123456789") == std::string::npos)
        found.emplace_back(std::stoll(digits), entry.path().string());
    }
  }
  std::sort(found.begin(), found.end());
  std::vector<std::string> paths;
  for (auto& f : found) paths.push_back(std::move(f.second));
  return paths;
}

std::string latest_checkpoint(const std::string& dir, const std::function<void(const std::string&)>& warn) {
  const std::vector<std::string> paths = list_step_checkpoints(dir);
  check(!paths.empty(), dir + ": no checkpoints (step-*.ckpt) to resume from");
  for (auto it = paths.rbegin(); it != paths.rend(); ++it) {
    try {
      verify_checkpoint(*it);
      return *it;
    } catch (const Error& e) {
      if (warn) warn(std::string("skipping a damaged checkpoint: ") + e.what());
    }
  }
  throw Error(dir + ": every checkpoint is damaged");
}

CheckpointContents load_checkpoint(const std::string& path) {
  const std::vector<unsigned char> bytes = read_file(path);
  return parse_checkpoint(bytes.data(), bytes.size(), path);
}

void load_optimizer_state(const std::string& path, torch::optim::Optimizer& optimizer) {
  const std::vector<unsigned char> bytes = read_file(path);
  const auto [payload, length] = payload_of(bytes.data(), bytes.size(), path);
  c10::Device device(c10::DeviceType::CPU);
  for (const auto& group : optimizer.param_groups())
    for (const auto& p : group.params()) device = p.device();
  torch::serialize::InputArchive archive = open_archive(payload, length, path, device);
  torch::serialize::InputArchive optimizer_archive;
  check(archive.try_read("optimizer", optimizer_archive), path + ": the checkpoint holds no optimizer state");
  try {
    optimizer.load(optimizer_archive);
  } catch (const c10::Error& e) {
    throw Error(path + ": optimizer state does not match: " + e.what_without_backtrace());
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(path + ": malformed optimizer state: " + first_line(e.what()));
  }
}

}  // namespace flatmin::training
