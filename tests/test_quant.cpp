// tests/test_quant.cpp: block codecs against gguf-py fixtures, encoder round trips.
#include <catch2/catch.hpp>

#include "gguf/quant.hpp"
