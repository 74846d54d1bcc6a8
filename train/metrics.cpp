// Evaluation metrics (see metrics.h for the definitions and the tie rule).
#include "train/metrics.h"

#include <algorithm>
#include <cmath>

namespace mmg {

namespace {

// A 2-D floating tensor read into a row-major host matrix, with its sizes.
struct HostMatrix {
  int64_t rows = 0, cols = 0;
  std::vector<double> values;
  double at(int64_t r, int64_t c) const { return values[static_cast<size_t>(r * cols + c)]; }
};

HostMatrix read_matrix(const Tensor& t, const char* fn, const char* what) {
  MMG_CHECK(t.defined(), "{}: {} is an undefined tensor", fn, what);
  MMG_CHECK(t.dim() == 2, "{}: {} must be 2-D, got shape {}", fn, what, shape_str(t.shape()));
  MMG_CHECK(is_floating(t.dtype()), "{}: {} must be floating, got {}", fn, what, dtype_name(t.dtype()));
  HostMatrix m{t.size(0), t.size(1), t.to_vector<double>()};
  for (int64_t r = 0; r < m.rows; ++r)
    for (int64_t c = 0; c < m.cols; ++c)
      MMG_CHECK(!std::isnan(m.at(r, c)), "{}: {}[{},{}] of shape {} is NaN", fn, what, r, c, shape_str(t.shape()));
  return m;
}

void check_ks(const std::vector<int>& ks, const char* fn) {
  MMG_CHECK(!ks.empty(), "{}: no k given", fn);
  for (int k : ks) MMG_CHECK(k >= 1, "{}: k must be at least 1, got {}", fn, k);
}

}  // namespace

// ------------------------------------------------------------------ retrieval -----

double recall_chance(int64_t gallery, int64_t positives, int64_t k) {
  MMG_CHECK(gallery >= 1, "recall_chance: gallery size must be at least 1, got {}", gallery);
  MMG_CHECK(positives >= 1 && positives <= gallery,
            "recall_chance: positives {} must lie in [1, gallery size {}]", positives, gallery);
  MMG_CHECK(k >= 1, "recall_chance: k must be at least 1, got {}", k);
  // P(no positive among the first k) = C(N−m, k)/C(N, k): choose the k first items from the
  // negatives only. Written as a product so that no binomial overflows.
  double miss = 1.0;
  for (int64_t j = 0; j < k; ++j) {
    if (gallery - positives - j <= 0) return 1.0;  // fewer than k negatives: a positive is always in
    miss *= static_cast<double>(gallery - positives - j) / static_cast<double>(gallery - j);
  }
  return 1.0 - miss;
}

RetrievalResult retrieval_metrics(const Tensor& similarity, const std::vector<int64_t>& text_to_image,
                                  const std::vector<int>& ks) {
  const char* fn = "retrieval_metrics";
  HostMatrix s = read_matrix(similarity, fn, "similarity");
  check_ks(ks, fn);
  const int64_t n_img = s.rows, n_txt = s.cols;
  MMG_CHECK(n_img >= 1 && n_txt >= 1, "{}: similarity {} has an empty gallery", fn, shape_str(similarity.shape()));
  MMG_CHECK(static_cast<int64_t>(text_to_image.size()) == n_txt,
            "{}: similarity {} has {} texts but text_to_image has {} entries", fn, shape_str(similarity.shape()),
            n_txt, text_to_image.size());
  std::vector<int64_t> texts_of_image(static_cast<size_t>(n_img), 0);
  for (int64_t t = 0; t < n_txt; ++t) {
    int64_t i = text_to_image[static_cast<size_t>(t)];
    MMG_CHECK(i >= 0 && i < n_img, "{}: text {} belongs to image {}, outside [0, {})", fn, t, i, n_img);
    ++texts_of_image[static_cast<size_t>(i)];
  }
  for (int64_t i = 0; i < n_img; ++i)
    MMG_CHECK(texts_of_image[static_cast<size_t>(i)] > 0, "{}: image {} of {} has no text", fn, i, n_img);

  // text→image: count the wrong images at least as similar to the text as its own image.
  std::vector<int64_t> text_rank(static_cast<size_t>(n_txt), 0);
  for (int64_t t = 0; t < n_txt; ++t) {
    int64_t own = text_to_image[static_cast<size_t>(t)];
    for (int64_t i = 0; i < n_img; ++i)
      if (i != own && s.at(i, t) >= s.at(own, t)) ++text_rank[static_cast<size_t>(t)];
  }
  // image→text: count the other images' texts at least as similar as the image's best text.
  std::vector<int64_t> image_rank(static_cast<size_t>(n_img), 0);
  for (int64_t i = 0; i < n_img; ++i) {
    double best = -std::numeric_limits<double>::infinity();
    for (int64_t t = 0; t < n_txt; ++t)
      if (text_to_image[static_cast<size_t>(t)] == i) best = std::max(best, s.at(i, t));
    for (int64_t t = 0; t < n_txt; ++t)
      if (text_to_image[static_cast<size_t>(t)] != i && s.at(i, t) >= best) ++image_rank[static_cast<size_t>(i)];
  }

  RetrievalResult r;
  r.num_images = n_img;
  r.num_texts = n_txt;
  for (int k : ks) {
    auto hits = [k](const std::vector<int64_t>& ranks) {
      return static_cast<double>(std::count_if(ranks.begin(), ranks.end(), [k](int64_t rank) { return rank < k; })) /
             static_cast<double>(ranks.size());
    };
    r.image_to_text[k] = hits(image_rank);
    r.text_to_image[k] = hits(text_rank);
    double chance = 0;
    for (int64_t m : texts_of_image) chance += recall_chance(n_txt, m, k);
    r.image_to_text_chance[k] = chance / static_cast<double>(n_img);
    r.text_to_image_chance[k] = recall_chance(n_img, 1, k);
  }
  return r;
}

// ------------------------------------------------------------------- accuracy -----

double accuracy(const std::vector<int64_t>& pred, const std::vector<int64_t>& target) {
  MMG_CHECK(pred.size() == target.size(), "accuracy: {} predictions but {} targets", pred.size(), target.size());
  MMG_CHECK(!pred.empty(), "accuracy: no predictions");
  int64_t right = 0;
  for (size_t i = 0; i < pred.size(); ++i) right += pred[i] == target[i];
  return static_cast<double>(right) / static_cast<double>(pred.size());
}

std::map<std::string, std::set<std::string>> answers_by_type(const std::vector<std::string>& answers,
                                                             const std::vector<std::string>& types) {
  MMG_CHECK(answers.size() == types.size(), "answers_by_type: {} answers but {} types", answers.size(),
            types.size());
  std::map<std::string, std::set<std::string>> sets;
  for (size_t i = 0; i < answers.size(); ++i) sets[types[i]].insert(answers[i]);
  return sets;
}

VqaResult vqa_metrics(const std::vector<std::string>& predicted, const std::vector<std::string>& truth,
                      const std::vector<std::string>& types,
                      const std::map<std::string, std::set<std::string>>& answers_of_type) {
  MMG_CHECK(predicted.size() == truth.size() && truth.size() == types.size(),
            "vqa_metrics: {} predicted answers, {} true answers and {} types: sizes must agree", predicted.size(),
            truth.size(), types.size());
  MMG_CHECK(!truth.empty(), "vqa_metrics: no questions");
  VqaResult r;
  std::map<std::string, int64_t> right_of_type;
  for (size_t i = 0; i < truth.size(); ++i) {
    auto set = answers_of_type.find(types[i]);
    MMG_CHECK(set == answers_of_type.end() || set->second.count(truth[i]),
              "vqa_metrics: true answer '{}' of question {} (type '{}') is not among the {} answers of its type",
              truth[i], i, types[i], set == answers_of_type.end() ? 0 : set->second.size());
    bool right = predicted[i] == truth[i];
    right_of_type[types[i]] += right;
    r.per_type[types[i]].count += 1;
  }
  int64_t right = 0;
  double weighted_chance = 0;
  for (auto& [type, score] : r.per_type) {
    right += right_of_type[type];
    score.accuracy = static_cast<double>(right_of_type[type]) / static_cast<double>(score.count);
    auto set = answers_of_type.find(type);
    if (set != answers_of_type.end()) score.chance = 1.0 / static_cast<double>(set->second.size());
    weighted_chance += score.chance * static_cast<double>(score.count);  // NaN spreads to the overall
  }
  r.count = static_cast<int64_t>(truth.size());
  r.accuracy = static_cast<double>(right) / static_cast<double>(r.count);
  r.chance = weighted_chance / static_cast<double>(r.count);
  return r;
}

// --------------------------------------------------------------------- BLEU -----

namespace {

using NgramCounts = std::map<std::vector<std::string>, int64_t>;

NgramCounts count_ngrams(const Tokens& tokens, size_t n) {
  NgramCounts counts;
  for (size_t i = 0; i + n <= tokens.size(); ++i)
    ++counts[std::vector<std::string>(tokens.begin() + static_cast<std::ptrdiff_t>(i),
                                      tokens.begin() + static_cast<std::ptrdiff_t>(i + n))];
  return counts;
}

// The reference length nearest the hypothesis length; the shorter one on a tie.
int64_t closest_reference_length(const Tokens& hypothesis, const std::vector<Tokens>& references) {
  int64_t c = static_cast<int64_t>(hypothesis.size()), best = static_cast<int64_t>(references[0].size());
  for (const Tokens& ref : references) {
    int64_t len = static_cast<int64_t>(ref.size());
    if (std::abs(len - c) < std::abs(best - c) || (std::abs(len - c) == std::abs(best - c) && len < best)) best = len;
  }
  return best;
}

}  // namespace

BleuResult corpus_bleu(const std::vector<Tokens>& hypotheses, const std::vector<std::vector<Tokens>>& references,
                       int max_n) {
  MMG_CHECK(max_n >= 1, "corpus_bleu: max_n must be at least 1, got {}", max_n);
  MMG_CHECK(hypotheses.size() == references.size(), "corpus_bleu: {} hypotheses but {} reference lists",
            hypotheses.size(), references.size());
  MMG_CHECK(!hypotheses.empty(), "corpus_bleu: empty corpus");
  std::vector<int64_t> matched(static_cast<size_t>(max_n), 0), total(static_cast<size_t>(max_n), 0);
  BleuResult r;
  for (size_t h = 0; h < hypotheses.size(); ++h) {
    MMG_CHECK(!references[h].empty(), "corpus_bleu: hypothesis {} has no reference", h);
    r.hypothesis_length += static_cast<int64_t>(hypotheses[h].size());
    r.reference_length += closest_reference_length(hypotheses[h], references[h]);
    for (size_t n = 1; n <= static_cast<size_t>(max_n); ++n) {
      // Clip each n-gram's count by the most times any single reference uses it.
      NgramCounts max_ref;
      for (const Tokens& ref : references[h])
        for (const auto& [gram, count] : count_ngrams(ref, n)) max_ref[gram] = std::max(max_ref[gram], count);
      for (const auto& [gram, count] : count_ngrams(hypotheses[h], n)) {
        auto it = max_ref.find(gram);
        matched[n - 1] += std::min(count, it == max_ref.end() ? int64_t{0} : it->second);
        total[n - 1] += count;
      }
    }
  }
  double log_sum = 0;
  bool some_zero = false;
  for (int n = 0; n < max_n; ++n) {
    double p = total[n] == 0 ? 0.0 : static_cast<double>(matched[n]) / static_cast<double>(total[n]);
    r.precisions.push_back(p);
    if (p == 0) some_zero = true;
    else log_sum += std::log(p);
  }
  const double c = static_cast<double>(r.hypothesis_length), ref = static_cast<double>(r.reference_length);
  r.brevity_penalty = c > ref ? 1.0 : (c == 0 ? 0.0 : std::exp(1.0 - ref / c));
  r.bleu = some_zero ? 0.0 : r.brevity_penalty * std::exp(log_sum / max_n);
  return r;
}

// ---------------------------------------------------------------- zero-shot -----

std::vector<int64_t> zero_shot_predictions(const Tensor& image_emb, const Tensor& class_text_emb) {
  const char* fn = "zero_shot_predictions";
  HostMatrix x = read_matrix(image_emb, fn, "image_emb");
  HostMatrix c = read_matrix(class_text_emb, fn, "class_text_emb");
  MMG_CHECK(x.cols == c.cols, "{}: image_emb {} and class_text_emb {} have different embedding sizes {} and {}", fn,
            shape_str(image_emb.shape()), shape_str(class_text_emb.shape()), x.cols, c.cols);
  MMG_CHECK(c.rows >= 1, "{}: class_text_emb {} has no class", fn, shape_str(class_text_emb.shape()));
  auto norm = [](const HostMatrix& m, int64_t row) {
    double s = 0;
    for (int64_t e = 0; e < m.cols; ++e) s += m.at(row, e) * m.at(row, e);
    return std::sqrt(s);
  };
  std::vector<double> class_norm(static_cast<size_t>(c.rows));
  for (int64_t k = 0; k < c.rows; ++k) {
    class_norm[static_cast<size_t>(k)] = norm(c, k);
    MMG_CHECK(class_norm[static_cast<size_t>(k)] > 0, "{}: class {} of {} has a zero text embedding", fn, k, c.rows);
  }
  std::vector<int64_t> pred(static_cast<size_t>(x.rows));
  for (int64_t i = 0; i < x.rows; ++i) {
    MMG_CHECK(norm(x, i) > 0, "{}: image {} of {} has a zero embedding", fn, i, x.rows);
    // |x_i| is the same for every class, so the argmax of <x_i, c_k>/|c_k| is the cosine argmax.
    double best = -std::numeric_limits<double>::infinity();
    for (int64_t k = 0; k < c.rows; ++k) {
      double dot = 0;
      for (int64_t e = 0; e < x.cols; ++e) dot += x.at(i, e) * c.at(k, e);
      double score = dot / class_norm[static_cast<size_t>(k)];
      if (score > best) best = score, pred[static_cast<size_t>(i)] = k;  // strict: ties keep the smaller k
    }
  }
  return pred;
}

double zero_shot_accuracy(const Tensor& image_emb, const Tensor& class_text_emb, const std::vector<int64_t>& labels) {
  std::vector<int64_t> pred = zero_shot_predictions(image_emb, class_text_emb);
  MMG_CHECK(labels.size() == pred.size(), "zero_shot_accuracy: image_emb {} has {} images but {} labels are given",
            shape_str(image_emb.shape()), pred.size(), labels.size());
  const int64_t classes = class_text_emb.size(0);
  for (size_t i = 0; i < labels.size(); ++i)
    MMG_CHECK(labels[i] >= 0 && labels[i] < classes, "zero_shot_accuracy: label {} of image {} is outside [0, {})",
              labels[i], i, classes);
  return accuracy(pred, labels);
}

// -------------------------------------------------------------------- table -----

std::string format_results_table(const std::vector<MetricRow>& rows) {
  auto number = [](double v) { return std::isnan(v) ? std::string("-") : fmt::format("{:.4f}", v); };
  std::vector<std::vector<std::string>> cells{{"metric", "value", "chance", "note"}};
  for (const MetricRow& row : rows) cells.push_back({row.name, number(row.value), number(row.chance), row.note});
  std::vector<size_t> width(4, 0);
  for (const auto& line : cells)
    for (size_t c = 0; c < 4; ++c) width[c] = std::max(width[c], line[c].size());

  auto join = [&](const std::vector<std::string>& line, bool numbers_right) {
    std::string out = fmt::format("{:<{}}", line[0], width[0]);
    for (size_t c = 1; c < 4; ++c)
      out += " | " + (numbers_right && c < 3 ? fmt::format("{:>{}}", line[c], width[c])
                                             : fmt::format("{:<{}}", line[c], width[c]));
    while (!out.empty() && out.back() == ' ') out.pop_back();
    return out + "\n";
  };
  std::string table = join(cells[0], false);
  table += std::string(width[0] + 1, '-');
  for (size_t c = 1; c < 4; ++c) table += "+" + std::string(width[c] + (c < 3 ? 2 : 1), '-');
  table += "\n";
  for (size_t r = 1; r < cells.size(); ++r) table += join(cells[r], true);
  return table;
}

}  // namespace mmg
