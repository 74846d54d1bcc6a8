// Evaluation metrics: retrieval recall@k, chance levels, accuracy, VQA, BLEU-4, zero-shot and
// the results table. Expected values are derived by hand in the comments next to each case;
// the chance formula is checked against enumeration of every ordering, and retrieval against
// a second implementation that sorts the gallery.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include "core/mmgrad.h"
#include "train/metrics.h"

using namespace mmg;

namespace {

doctest::Contains contains(const std::string& text) { return doctest::Contains(text.c_str()); }

Tensor matrix(const std::vector<std::vector<double>>& rows) {
  std::vector<float> values;
  for (const auto& row : rows) values.insert(values.end(), row.begin(), row.end());
  return from_vector(values, {static_cast<int64_t>(rows.size()), static_cast<int64_t>(rows[0].size())});
}

Tokens words(const std::string& text) {
  Tokens out;
  std::string word;
  for (char ch : text + " ") {
    if (ch == ' ') {
      if (!word.empty()) out.push_back(word);
      word.clear();
    } else {
      word += ch;
    }
  }
  return out;
}

// Reference recall@k by sorting: order the candidates by score, ties put wrong candidates
// first (the pessimistic rule), and look for the first right one.
double sorted_recall(const std::vector<std::vector<double>>& scores_of_query,
                     const std::vector<std::vector<bool>>& right_of_query, int k) {
  int hits = 0;
  for (size_t q = 0; q < scores_of_query.size(); ++q) {
    std::vector<size_t> order(scores_of_query[q].size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      if (scores_of_query[q][a] != scores_of_query[q][b]) return scores_of_query[q][a] > scores_of_query[q][b];
      return !right_of_query[q][a] && right_of_query[q][b];
    });
    for (size_t pos = 0; pos < order.size() && pos < static_cast<size_t>(k); ++pos)
      if (right_of_query[q][order[pos]]) {
        ++hits;
        break;
      }
  }
  return static_cast<double>(hits) / static_cast<double>(scores_of_query.size());
}

}  // namespace

// ------------------------------------------------------------------ retrieval -----

TEST_CASE("metric: retrieval recall@k of a 3x3 gallery with hand-counted ranks") {
  // rows are images, columns texts; text t belongs to image t.
  //   img0: 0.9 0.1 0.3   own text 0.9, nothing above          -> i2t rank 0
  //   img1: 0.2 0.4 0.8   own text 0.4, text 2 (0.8) above      -> i2t rank 1
  //   img2: 0.5 0.6 0.7   own text 0.7, nothing above          -> i2t rank 0
  // columns: text0 (0.9,0.2,0.5) own 0.9 -> rank 0; text1 (0.1,0.4,0.6) own 0.4, img2 above -> 1;
  //          text2 (0.3,0.8,0.7) own 0.7, img1 above -> 1.
  Tensor s = matrix({{0.9, 0.1, 0.3}, {0.2, 0.4, 0.8}, {0.5, 0.6, 0.7}});
  RetrievalResult r = retrieval_metrics(s, {0, 1, 2}, {1, 2, 5});
  CHECK(r.num_images == 3);
  CHECK(r.num_texts == 3);
  CHECK(r.image_to_text.at(1) == doctest::Approx(2.0 / 3));
  CHECK(r.image_to_text.at(2) == doctest::Approx(1.0));
  CHECK(r.image_to_text.at(5) == doctest::Approx(1.0));  // k beyond the gallery always hits
  CHECK(r.text_to_image.at(1) == doctest::Approx(1.0 / 3));
  CHECK(r.text_to_image.at(2) == doctest::Approx(1.0));
  // One right answer among 3: chance k/3, capped at 1.
  CHECK(r.text_to_image_chance.at(1) == doctest::Approx(1.0 / 3));
  CHECK(r.text_to_image_chance.at(2) == doctest::Approx(2.0 / 3));
  CHECK(r.text_to_image_chance.at(5) == doctest::Approx(1.0));
  CHECK(r.image_to_text_chance.at(1) == doctest::Approx(1.0 / 3));
}

TEST_CASE("metric: retrieval ties count against the right answer (pessimistic)") {
  // Constant scores: every wrong candidate ties with the right one and goes ahead of it, so
  // the rank is N-1 = 2 everywhere: recall@1 = recall@2 = 0, recall@3 = 1.
  Tensor flat = full({3, 3}, 0.5);
  RetrievalResult r = retrieval_metrics(flat, {0, 1, 2}, {1, 2, 3});
  CHECK(r.image_to_text.at(1) == 0.0);
  CHECK(r.image_to_text.at(2) == 0.0);
  CHECK(r.image_to_text.at(3) == 1.0);
  CHECK(r.text_to_image.at(1) == 0.0);
  CHECK(r.text_to_image.at(3) == 1.0);
  // One tie: image 0 scores its own text 0.5 and text 1 also 0.5 -> rank 1, a miss at k = 1;
  // the other images are clear winners.
  Tensor one_tie = matrix({{0.5, 0.5, 0.1}, {0.0, 0.9, 0.1}, {0.0, 0.1, 0.9}});
  RetrievalResult t = retrieval_metrics(one_tie, {0, 1, 2}, {1, 2});
  CHECK(t.image_to_text.at(1) == doctest::Approx(2.0 / 3));
  CHECK(t.image_to_text.at(2) == doctest::Approx(1.0));
  // Columns: text0 (0.5, 0.0, 0.0) own 0.5 -> 0; text1 (0.5, 0.9, 0.1) own 0.9 -> 0; text2 -> 0.
  CHECK(t.text_to_image.at(1) == doctest::Approx(1.0));
}

TEST_CASE("metric: retrieval with several texts per image: an image hits when any of its texts does") {
  // 2 images, 5 texts; texts 0,1,2 belong to image 0, texts 3,4 to image 1.
  //   img0: 0.1 0.9 0.2 | 0.8 0.3   best own 0.9; wrong texts >= 0.9: none       -> rank 0
  //   img1: 0.7 0.6 0.9 | 0.5 0.65  best own 0.65; wrong texts >= 0.65: 0.7, 0.9 -> rank 2
  // i2t: recall@1 = recall@2 = 1/2, recall@3 = 1.
  // t2i (own image vs the other): t0 0.1<0.7 miss, t1 0.9>0.6 hit, t2 0.2<0.9 miss,
  //   t3 0.5<0.8 miss, t4 0.65>0.3 hit -> recall@1 = 2/5, recall@2 = 1.
  Tensor s = matrix({{0.1, 0.9, 0.2, 0.8, 0.3}, {0.7, 0.6, 0.9, 0.5, 0.65}});
  RetrievalResult r = retrieval_metrics(s, {0, 0, 0, 1, 1}, {1, 2, 3});
  CHECK(r.image_to_text.at(1) == doctest::Approx(0.5));
  CHECK(r.image_to_text.at(2) == doctest::Approx(0.5));
  CHECK(r.image_to_text.at(3) == doctest::Approx(1.0));
  CHECK(r.text_to_image.at(1) == doctest::Approx(0.4));
  CHECK(r.text_to_image.at(2) == doctest::Approx(1.0));
  // i2t chance, mean over the images of 1 - C(5-m,k)/C(5,k), m = 3 and 2:
  //   k=1: (3/5 + 2/5)/2 = 1/2
  //   k=2: (1 - 1/10 + 1 - 3/10)/2 = 0.8            C(2,2)=1, C(3,2)=3, C(5,2)=10
  //   k=3: (1 + 1 - 1/10)/2 = 0.95                  C(2,3)=0, C(3,3)=1, C(5,3)=10
  CHECK(r.image_to_text_chance.at(1) == doctest::Approx(0.5));
  CHECK(r.image_to_text_chance.at(2) == doctest::Approx(0.8));
  CHECK(r.image_to_text_chance.at(3) == doctest::Approx(0.95));
  CHECK(r.text_to_image_chance.at(1) == doctest::Approx(0.5));
}

TEST_CASE("metric: retrieval agrees with ranking by sorting on random galleries with ties") {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 20; ++trial) {
    const int n_img = 2 + trial % 5, n_txt = n_img + trial % 4;
    std::vector<int64_t> owner(static_cast<size_t>(n_txt));
    for (int t = 0; t < n_txt; ++t) owner[static_cast<size_t>(t)] = t < n_img ? t : static_cast<int64_t>(rng() % n_img);
    // Scores on a coarse grid of 4 values, so that ties are common.
    std::vector<std::vector<double>> s(static_cast<size_t>(n_img), std::vector<double>(static_cast<size_t>(n_txt)));
    for (auto& row : s)
      for (double& v : row) v = static_cast<double>(rng() % 4) / 4.0;
    RetrievalResult r = retrieval_metrics(matrix(s), owner, {1, 2, 3});
    std::vector<std::vector<double>> i2t_scores = s, t2i_scores(static_cast<size_t>(n_txt));
    std::vector<std::vector<bool>> i2t_right(static_cast<size_t>(n_img)), t2i_right(static_cast<size_t>(n_txt));
    for (int i = 0; i < n_img; ++i)
      for (int t = 0; t < n_txt; ++t) {
        i2t_right[static_cast<size_t>(i)].push_back(owner[static_cast<size_t>(t)] == i);
        t2i_scores[static_cast<size_t>(t)].push_back(s[static_cast<size_t>(i)][static_cast<size_t>(t)]);
        t2i_right[static_cast<size_t>(t)].push_back(owner[static_cast<size_t>(t)] == i);
      }
    for (int k : {1, 2, 3}) {
      CHECK(r.image_to_text.at(k) == doctest::Approx(sorted_recall(i2t_scores, i2t_right, k)));
      CHECK(r.text_to_image.at(k) == doctest::Approx(sorted_recall(t2i_scores, t2i_right, k)));
    }
  }
}

TEST_CASE("metric: recall_chance equals enumeration of every ordering") {
  // Items 0..m-1 are the positives; count the orderings with a positive in the first k.
  for (int n = 1; n <= 6; ++n)
    for (int m = 1; m <= n; ++m)
      for (int k = 1; k <= n + 1; ++k) {
        std::vector<int> perm(static_cast<size_t>(n));
        std::iota(perm.begin(), perm.end(), 0);
        int hits = 0, total = 0;
        do {
          ++total;
          for (int pos = 0; pos < std::min(k, n); ++pos)
            if (perm[static_cast<size_t>(pos)] < m) {
              ++hits;
              break;
            }
        } while (std::next_permutation(perm.begin(), perm.end()));
        INFO("N=" << n << " m=" << m << " k=" << k);
        CHECK(recall_chance(n, m, k) == doctest::Approx(static_cast<double>(hits) / total));
      }
  CHECK(recall_chance(1000, 1, 10) == doctest::Approx(0.01));  // one positive: k/N
}

TEST_CASE("metric: retrieval and recall_chance reject bad input, naming the sizes") {
  Tensor s = full({2, 3}, 0.0);
  CHECK_THROWS_WITH_AS(retrieval_metrics(s, {0, 1}), contains("retrieval_metrics: similarity [2,3] has 3 texts but text_to_image has 2 entries"), Error);
  CHECK_THROWS_WITH_AS(retrieval_metrics(s, {0, 1, 2}), contains("text 2 belongs to image 2, outside [0, 2)"), Error);
  CHECK_THROWS_WITH_AS(retrieval_metrics(s, {0, 0, 0}), contains("image 1 of 2 has no text"), Error);
  CHECK_THROWS_WITH_AS(retrieval_metrics(full({6}, 0.0), {0}), contains("similarity must be 2-D, got shape [6]"), Error);
  CHECK_THROWS_WITH_AS(retrieval_metrics(s, {0, 1, 1}, {1, 0}), contains("k must be at least 1, got 0"), Error);
  CHECK_THROWS_WITH_AS(retrieval_metrics(full({2, 3}, 0, {.dtype = DType::i64}), {0, 1, 1}),
                       contains("similarity must be floating, got i64"), Error);
  Tensor with_nan = matrix({{0.0, std::nan(""), 0.0}, {0.0, 0.0, 0.0}});
  CHECK_THROWS_WITH_AS(retrieval_metrics(with_nan, {0, 1, 1}), contains("similarity[0,1] of shape [2,3] is NaN"), Error);
  CHECK_THROWS_WITH_AS(recall_chance(5, 6, 1), contains("positives 6 must lie in [1, gallery size 5]"), Error);
  CHECK_THROWS_WITH_AS(recall_chance(5, 1, 0), contains("recall_chance: k must be at least 1, got 0"), Error);
}

// ------------------------------------------------------------------- accuracy -----

TEST_CASE("metric: accuracy counts exact matches") {
  CHECK(accuracy({1, 2, 3, 4}, {1, 0, 3, 0}) == doctest::Approx(0.5));
  CHECK(accuracy({7}, {7}) == 1.0);
  CHECK_THROWS_WITH_AS(accuracy({1, 2}, {1}), contains("accuracy: 2 predictions but 1 targets"), Error);
  CHECK_THROWS_WITH_AS(accuracy({}, {}), contains("accuracy: no predictions"), Error);
}

TEST_CASE("metric: VQA accuracy and chance, overall and per type") {
  // colour: red/red right, blue/red wrong -> 1/2 of 2; count: 3/3 right, 2/3 wrong -> 1/2 of 2;
  // exist: yes/yes right -> 1 of 1. Overall 3/5.
  // Chances: colour 1/3 (red, blue, green), count 1/4 (1..4), exist 1/2 (yes, no);
  // overall (2·1/3 + 2·1/4 + 1·1/2) / 5 = (5/3) / 5 = 1/3.
  std::vector<std::string> predicted{"red", "blue", "3", "2", "yes"}, truth{"red", "red", "3", "3", "yes"},
      types{"colour", "colour", "count", "count", "exist"};
  std::map<std::string, std::set<std::string>> sets{
      {"colour", {"red", "blue", "green"}}, {"count", {"1", "2", "3", "4"}}, {"exist", {"yes", "no"}}};
  VqaResult r = vqa_metrics(predicted, truth, types, sets);
  CHECK(r.count == 5);
  CHECK(r.accuracy == doctest::Approx(0.6));
  CHECK(r.chance == doctest::Approx(1.0 / 3));
  REQUIRE(r.per_type.size() == 3);
  CHECK(r.per_type.at("colour").accuracy == doctest::Approx(0.5));
  CHECK(r.per_type.at("colour").count == 2);
  CHECK(r.per_type.at("colour").chance == doctest::Approx(1.0 / 3));
  CHECK(r.per_type.at("count").chance == doctest::Approx(0.25));
  CHECK(r.per_type.at("exist").accuracy == 1.0);
  CHECK(r.per_type.at("exist").chance == doctest::Approx(0.5));

  // Without answer sets there is no chance level.
  VqaResult bare = vqa_metrics(predicted, truth, types);
  CHECK(bare.accuracy == doctest::Approx(0.6));
  CHECK(std::isnan(bare.chance));
  CHECK(std::isnan(bare.per_type.at("count").chance));

  // answers_by_type collects the distinct true answers of each type.
  auto collected = answers_by_type({"red", "blue", "red", "3"}, {"colour", "colour", "colour", "count"});
  CHECK(collected.at("colour") == std::set<std::string>{"blue", "red"});
  CHECK(collected.at("count") == std::set<std::string>{"3"});
}

TEST_CASE("metric: VQA rejects mismatched sizes and answers outside their type") {
  CHECK_THROWS_WITH_AS(vqa_metrics({"a"}, {"a", "b"}, {"t", "t"}),
                       contains("vqa_metrics: 1 predicted answers, 2 true answers and 2 types"), Error);
  CHECK_THROWS_WITH_AS(vqa_metrics({}, {}, {}), contains("vqa_metrics: no questions"), Error);
  CHECK_THROWS_WITH_AS(vqa_metrics({"red"}, {"purple"}, {"colour"}, {{"colour", {"red", "blue"}}}),
                       contains("true answer 'purple' of question 0 (type 'colour') is not among the 2 answers"), Error);
}

// --------------------------------------------------------------------- BLEU -----

TEST_CASE("metric: BLEU-4 of identical text is 1, without any 4-gram match 0") {
  Tokens sentence = words("a small red square left of a blue circle");
  BleuResult same = corpus_bleu({sentence}, {{sentence}});
  CHECK(same.bleu == doctest::Approx(1.0));
  CHECK(same.brevity_penalty == 1.0);
  // hyp "a b c d e", ref "a b c x d e": every word matches (p1 = 5/5), but the hypothesis'
  // 4-grams "a b c d", "b c d e" are not in the reference -> p4 = 0 -> BLEU 0.
  BleuResult none = corpus_bleu({words("a b c d e")}, {{words("a b c x d e")}});
  CHECK(none.precisions[0] == doctest::Approx(1.0));
  CHECK(none.precisions[3] == 0.0);
  CHECK(none.bleu == 0.0);
}

TEST_CASE("metric: BLEU-4 worked example with a brevity penalty") {
  // hyp "the cat sat on the mat" (c = 6), ref "the cat sat on the red mat" (r = 7).
  //   1-grams: the×2 cat sat on mat, all in the ref (the×2 there too)   p1 = 6/6
  //   2-grams: the cat, cat sat, sat on, on the | the mat (not in ref)   p2 = 4/5
  //   3-grams: the cat sat, cat sat on, sat on the | on the mat          p3 = 3/4
  //   4-grams: the cat sat on, cat sat on the | sat on the mat           p4 = 2/3
  //   geometric mean (1 · 4/5 · 3/4 · 2/3)^(1/4) = 0.4^(1/4);  BP = exp(1 − 7/6) = e^(−1/6)
  //   BLEU = 0.4^(1/4) · e^(−1/6) ≈ 0.795271 · 0.846482 ≈ 0.673183
  Tokens hyp = words("the cat sat on the mat");
  BleuResult r = corpus_bleu({hyp}, {{words("the cat sat on the red mat")}});
  REQUIRE(r.precisions.size() == 4);
  CHECK(r.precisions[0] == doctest::Approx(1.0));
  CHECK(r.precisions[1] == doctest::Approx(0.8));
  CHECK(r.precisions[2] == doctest::Approx(0.75));
  CHECK(r.precisions[3] == doctest::Approx(2.0 / 3));
  CHECK(r.hypothesis_length == 6);
  CHECK(r.reference_length == 7);
  CHECK(r.brevity_penalty == doctest::Approx(std::exp(-1.0 / 6)));
  CHECK(r.bleu == doctest::Approx(std::pow(0.4, 0.25) * std::exp(-1.0 / 6)));
  CHECK(r.bleu == doctest::Approx(0.673183).epsilon(1e-5));

  // A second, longer reference that shares no word changes nothing: the closest length is
  // still 7 (|6−7| < |6−12|) and its n-grams clip nothing.
  BleuResult two = corpus_bleu({hyp}, {{words("x y z x y z x y z x y z"), words("the cat sat on the red mat")}});
  CHECK(two.reference_length == 7);
  CHECK(two.bleu == doctest::Approx(r.bleu));
}

TEST_CASE("metric: BLEU clips counts by the references (Papineni's 'the the the' example)") {
  // hyp "the"×7; refs "the cat is on the mat" (the×2), "there is a cat on the mat" (the×1):
  // clipped unigram count min(7, max(2, 1)) = 2 -> p1 = 2/7.
  BleuResult r = corpus_bleu({words("the the the the the the the")},
                             {{words("the cat is on the mat"), words("there is a cat on the mat")}});
  CHECK(r.precisions[0] == doctest::Approx(2.0 / 7));
  CHECK(r.precisions[1] == 0.0);  // "the the" is in neither reference
  CHECK(r.bleu == 0.0);
}

TEST_CASE("metric: BLEU closest reference length, ties to the shorter") {
  // hyp of 5 words; refs of 4 and 6 words are equally near -> r = 4 < c = 5 -> BP = 1.
  BleuResult tie = corpus_bleu({words("a b c d e")}, {{words("a b c d e f"), words("a b c d")}});
  CHECK(tie.reference_length == 4);
  CHECK(tie.brevity_penalty == 1.0);
  // refs of 6 and 8 words: 6 is nearer -> BP = exp(1 − 6/5).
  BleuResult near = corpus_bleu({words("a b c d e")}, {{words("a b c d e f g h"), words("a b c d e f")}});
  CHECK(near.reference_length == 6);
  CHECK(near.brevity_penalty == doctest::Approx(std::exp(1.0 - 6.0 / 5)));
}

TEST_CASE("metric: BLEU sums n-gram counts over the corpus before dividing") {
  // Sentence A: "a b c d" against itself: 4/4, 3/3, 2/2, 1/1 matches, c = r = 4.
  // Sentence B: "a b c d e" against "a b c x d e": 1-grams 5/5; 2-grams ab bc de of ab bc cd de
  //   -> 3/4; 3-grams abc of abc bcd cde -> 1/3; 4-grams 0/2; c = 5, r = 6.
  // Corpus: p = 9/9, 6/7, 3/5, 1/3; c = 9, r = 10, BP = e^(1 − 10/9) = e^(−1/9).
  // BLEU = e^(−1/9) · (6/7 · 3/5 · 1/3)^(1/4) = e^(−1/9) · (6/35)^(1/4) — not the mean of the
  // sentence scores (1 and 0).
  BleuResult r = corpus_bleu({words("a b c d"), words("a b c d e")}, {{words("a b c d")}, {words("a b c x d e")}});
  CHECK(r.precisions[1] == doctest::Approx(6.0 / 7));
  CHECK(r.precisions[2] == doctest::Approx(0.6));
  CHECK(r.precisions[3] == doctest::Approx(1.0 / 3));
  CHECK(r.bleu == doctest::Approx(std::exp(-1.0 / 9) * std::pow(6.0 / 35, 0.25)));
}

TEST_CASE("metric: BLEU rejects a corpus without references") {
  CHECK_THROWS_WITH_AS(corpus_bleu({words("a")}, {}), contains("corpus_bleu: 1 hypotheses but 0 reference lists"), Error);
  CHECK_THROWS_WITH_AS(corpus_bleu({}, {}), contains("corpus_bleu: empty corpus"), Error);
  CHECK_THROWS_WITH_AS(corpus_bleu({words("a")}, {{}}), contains("corpus_bleu: hypothesis 0 has no reference"), Error);
  // An empty hypothesis adds no n-grams: a corpus of only empty ones scores 0, not NaN.
  CHECK(corpus_bleu({Tokens{}}, {{words("a b")}}).bleu == 0.0);
}

// ---------------------------------------------------------------- zero-shot -----

TEST_CASE("metric: zero-shot classification by cosine, not by dot product") {
  // Classes c0 = (10, 0), c1 = (0, 1). Cosines:
  //   x0 = (1, 0)     : 1 vs 0                    -> 0
  //   x1 = (0, 2)     : 0 vs 1                    -> 1
  //   x2 = (1, 1.1)   : 1/|x2| vs 1.1/|x2|        -> 1   (a dot product would pick c0: 10 > 1.1)
  //   x3 = (-1, 0)    : -1 vs 0                   -> 1
  Tensor images = matrix({{1, 0}, {0, 2}, {1, 1.1}, {-1, 0}});
  Tensor classes = matrix({{10, 0}, {0, 1}});
  CHECK(zero_shot_predictions(images, classes) == std::vector<int64_t>{0, 1, 1, 1});
  CHECK(zero_shot_accuracy(images, classes, {0, 1, 1, 0}) == doctest::Approx(0.75));
  // A tie goes to the smaller class index.
  CHECK(zero_shot_predictions(matrix({{1, 1}}), matrix({{0, 3}, {3, 0}})) == std::vector<int64_t>{0});
}

TEST_CASE("metric: zero-shot rejects mismatched embeddings, zero vectors and bad labels") {
  Tensor images = matrix({{1, 0}, {0, 1}});
  CHECK_THROWS_WITH_AS(zero_shot_accuracy(images, matrix({{1, 0, 0}}), {0, 0}),
                       contains("image_emb [2,2] and class_text_emb [1,3] have different embedding sizes 2 and 3"), Error);
  CHECK_THROWS_WITH_AS(zero_shot_accuracy(images, matrix({{1, 0}}), {0}),
                       contains("image_emb [2,2] has 2 images but 1 labels"), Error);
  CHECK_THROWS_WITH_AS(zero_shot_accuracy(images, matrix({{1, 0}}), {0, 1}),
                       contains("label 1 of image 1 is outside [0, 1)"), Error);
  CHECK_THROWS_WITH_AS(zero_shot_accuracy(matrix({{0, 0}}), matrix({{1, 0}}), {0}),
                       contains("image 0 of 1 has a zero embedding"), Error);
  CHECK_THROWS_WITH_AS(zero_shot_accuracy(images, matrix({{1, 0}, {0, 0}}), {0, 0}),
                       contains("class 1 of 2 has a zero text embedding"), Error);
}

// -------------------------------------------------------------------- table -----

TEST_CASE("metric: results table aligns its columns and prints '-' for no chance") {
  // Column widths: metric 7 ("i2t R@1"), value 6, chance 6, note 10 ("100 images").
  std::string table = format_results_table({{"i2t R@1", 0.45, 0.01, "100 images"},
                                            {"BLEU-4", 0.21, std::nan(""), ""}});
  CHECK(table ==
        "metric  | value  | chance | note\n"
        "--------+--------+--------+-----------\n"
        "i2t R@1 | 0.4500 | 0.0100 | 100 images\n"
        "BLEU-4  | 0.2100 |      - |\n");
  CHECK(format_results_table({}) == "metric | value | chance | note\n-------+-------+--------+-----\n");
}
