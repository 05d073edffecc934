#pragma once
// bioS-mini: a synthetic world of people with four attributes, after Physics of Language Models
// 3.1, scaled down to train on two cores.
//
// - People have a unique first + last name and four one-word attributes: birth city, university,
//   major and employer (so every answer is one token and exact match is a token comparison).
// - Each person gets several biographies: one sentence per attribute, each drawn from four
//   paraphrases, in a random sentence order, with the full name in every sentence. Without this
//   augmentation stored facts are not extractable by questions (9.7% against 96% in the paper).
// - Questions have one template per attribute; a cloze probe per attribute uses the wording of
//   the first paraphrase, to show whether SFT stored a fact even where a question fails.
// - People are split into three disjoint groups: P0 (pretraining the base), S (source) and T
//   (target).
#include <skillvec/nn/rng.hpp>

#include <nlohmann/json.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace past_demo {

inline constexpr std::size_t attribute_count = 4;
inline constexpr std::array<const char*, attribute_count> attribute_names = {"birth_city", "university", "major", "employer"};

struct person {
    std::string name;                                 // "Ana Lopez"
    std::array<std::string, attribute_count> values;  // one word each
};

struct question {
    std::size_t person = 0, attribute = 0;
    std::string prompt; // "Where was Ana Lopez born ? Answer :"
    std::string answer; // "Lima"
};

struct world {
    std::vector<person> p0, s, t;

    [[nodiscard]] const std::vector<person>& group(char g) const { return g == '0' ? p0 : g == 'S' ? s : t; }
};

namespace detail {
inline const std::vector<std::string> first_names = {
    "Ana", "Ben", "Cara", "Dan", "Eva", "Finn", "Gina", "Hugo", "Iris", "Jack", "Kira", "Liam", "Mia", "Noah",
    "Olga", "Paul", "Quinn", "Rosa", "Sam", "Tara", "Uma", "Victor", "Wendy", "Xavier", "Yara", "Zane", "Alma", "Boris",
    "Clara", "Dmitri", "Elena", "Felix", "Greta", "Hans", "Ines", "Jonas", "Karl", "Lena", "Marco", "Nina"};
inline const std::vector<std::string> last_names = {
    "Lopez", "Smith", "Novak", "Okafor", "Tanaka", "Muller", "Rossi", "Silva", "Kowalski", "Jensen", "Dubois", "Costa",
    "Ivanova", "Nguyen", "Haddad", "Larsen", "Moreau", "Fischer", "Bianchi", "Santos", "Horvat", "Berg", "Kaur",
    "Quinlan", "Petrov", "Walsh", "Yilmaz", "Zhang", "Abbott", "Brennan", "Castillo", "Dvorak", "Eriksen", "Fontaine",
    "Gallo", "Hayes", "Ito", "Jaramillo", "Keller", "Lindqvist"};
inline const std::array<std::vector<std::string>, attribute_count> values = {{
    {"Lima", "Oslo", "Cairo", "Dublin", "Lisbon", "Quito", "Porto", "Kyoto", "Perth", "Austin", "Denver", "Boston",
     "Seattle", "Chicago", "Madrid", "Vienna", "Prague", "Berlin", "Munich", "Zurich"},
    {"Stanford", "Harvard", "Princeton", "Yale", "Cornell", "Columbia", "Oxford", "Cambridge", "Caltech", "Duke",
     "Brown", "Rice", "Purdue", "Tufts", "Emory", "Vanderbilt"},
    {"Physics", "Chemistry", "Biology", "History", "Economics", "Philosophy", "Linguistics", "Mathematics", "Geology",
     "Astronomy", "Sociology", "Psychology", "Architecture", "Music", "Nursing", "Statistics"},
    {"Google", "Amazon", "Intel", "Oracle", "Boeing", "Pfizer", "Nike", "Sony", "Siemens", "Nokia", "Samsung", "Toyota",
     "Honda", "Shell", "Unilever", "Nestle", "Adidas", "Philips", "Spotify", "Netflix"},
}};
// Four paraphrases per attribute; {n} is the full name, {v} the value. The first is the cloze wording.
inline const std::array<std::array<const char*, 4>, attribute_count> sentences = {{
    {"{n} was born in {v} .", "{n} came into the world in {v} .", "{n} spent the first years of life in {v} .",
     "The birthplace of {n} is {v} ."},
    {"{n} studied at {v} .", "{n} graduated from {v} .", "{n} received an education at {v} .",
     "{n} attended {v} for college ."},
    {"{n} majored in {v} .", "{n} focused on {v} at university .", "The field {n} studied was {v} .",
     "{n} earned a degree in {v} ."},
    {"{n} worked for {v} .", "{n} was employed by {v} .", "{n} built a career at {v} .", "The employer of {n} was {v} ."},
}};
inline const std::array<const char*, attribute_count> questions = {
    "Where was {n} born ? Answer :", "Which university did {n} attend ? Answer :", "What did {n} study ? Answer :",
    "Which company did {n} work for ? Answer :"};
inline const std::array<const char*, attribute_count> cloze = {"{n} was born in", "{n} studied at", "{n} majored in",
                                                              "{n} worked for"};

inline std::string fill(const char* templ, const std::string& n, const std::string& v = {}) {
    std::string s(templ), out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s.compare(i, 3, "{n}") == 0) {
            out += n;
            i += 2;
        } else if (s.compare(i, 3, "{v}") == 0) {
            out += v;
            i += 2;
        } else {
            out += s[i];
        }
    }
    return out;
}
} // namespace detail

/// A world with the given group sizes, drawn from `seed`.
inline world make_world(std::size_t n_p0, std::size_t n_s, std::size_t n_t, std::uint64_t seed) {
    skillvec::nn::rng g(skillvec::nn::derive_seed(seed, 0x776f726c /* "worl" */));
    std::vector<std::size_t> ids(detail::first_names.size() * detail::last_names.size());
    for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = i;
    g.shuffle(ids.begin(), ids.end());
    const std::size_t n = n_p0 + n_s + n_t;
    if (n > ids.size()) throw std::runtime_error("make_world: at most " + std::to_string(ids.size()) + " people");
    world w;
    for (std::size_t i = 0; i < n; ++i) {
        person p;
        p.name = detail::first_names[ids[i] / detail::last_names.size()] + " " + detail::last_names[ids[i] % detail::last_names.size()];
        for (std::size_t a = 0; a < attribute_count; ++a) p.values[a] = detail::values[a][g.below(detail::values[a].size())];
        (i < n_p0 ? w.p0 : i < n_p0 + n_s ? w.s : w.t).push_back(std::move(p));
    }
    return w;
}

/// `count` biographies of `p`: one sentence per attribute (random paraphrase), in random order.
inline std::vector<std::string> biographies(const person& p, std::size_t count, skillvec::nn::rng& g) {
    std::vector<std::string> out;
    for (std::size_t b = 0; b < count; ++b) {
        std::array<std::size_t, attribute_count> order = {0, 1, 2, 3};
        g.shuffle(order.begin(), order.end());
        std::string bio;
        for (std::size_t a : order) {
            if (!bio.empty()) bio += ' ';
            bio += detail::fill(detail::sentences[a][g.below(4)], p.name, p.values[a]);
        }
        out.push_back(std::move(bio));
    }
    return out;
}

/// The four questions about `p` (index `idx` in its group).
inline std::vector<question> questions_about(const person& p, std::size_t idx) {
    std::vector<question> out;
    for (std::size_t a = 0; a < attribute_count; ++a)
        out.push_back({idx, a, detail::fill(detail::questions[a], p.name), p.values[a]});
    return out;
}

/// The cloze probe for attribute `a` of `p` ("Ana Lopez was born in" -> "Lima").
inline question cloze_about(const person& p, std::size_t idx, std::size_t a) {
    return {idx, a, detail::fill(detail::cloze[a], p.name), p.values[a]};
}

/// Every sentence any stage may show, for building the vocabulary.
inline std::vector<std::string> vocabulary_corpus() {
    std::vector<std::string> c;
    std::string names;
    for (const auto& f : detail::first_names) names += f + " ";
    for (const auto& l : detail::last_names) names += l + " ";
    c.push_back(names);
    for (std::size_t a = 0; a < attribute_count; ++a) {
        std::string v;
        for (const auto& x : detail::values[a]) v += x + " ";
        c.push_back(v);
        for (const char* s : detail::sentences[a]) c.push_back(detail::fill(s, "", ""));
        c.push_back(detail::fill(detail::questions[a], ""));
    }
    return c;
}

/// Writes the world as JSONL: one object per person with its group and attributes.
inline void dump_jsonl(const world& w, const std::string& path) {
    const std::string tmp = path + ".tmp"; // renamed into place only when complete
    std::ofstream f(tmp);
    if (!f) throw std::runtime_error(tmp + ": cannot write");
    for (char g : {'0', 'S', 'T'})
        for (const auto& p : w.group(g)) {
            nlohmann::json j = {{"group", g == '0' ? "P0" : std::string(1, g)}, {"name", p.name}};
            for (std::size_t a = 0; a < attribute_count; ++a) j[attribute_names[a]] = p.values[a];
            f << j.dump() << '\n';
        }
    f.close();
    if (!f) throw std::runtime_error(tmp + ": write failed");
    std::filesystem::rename(tmp, path);
}

} // namespace past_demo
