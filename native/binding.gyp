{
  "targets": [
    {
      "target_name": "dnspacer_native",
      "sources": [
        "src/addon.cc",
        "src/errors.cc",
        "src/netns.cc",
        "src/nsid.cc",
        "src/qdisc.cc",
        "src/object.cc",
        "src/maps.cc",
        "src/tc.cc",
        "src/testrun.cc",
        "src/ringbuf.cc",
        "src/log.cc"
      ],
      "include_dirs": ["<!@(node -p \"require('node-addon-api').include\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_CPP_EXCEPTIONS"],
      "cflags_cc": ["-std=c++20", "-Wall", "-Wextra", "-Wno-missing-field-initializers", "-fno-exceptions"],
      "libraries": ["-lbpf"]
    }
  ]
}
