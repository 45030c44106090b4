-- Builds and installs the bgwf Lua module (require "bgwf") with LuaRocks,
-- through the project's CMake build. Offline, with the Debian packages of
-- scripts/setup installed:
--
--   cp bgwf.rockspec bgwf-0.1.0-1.rockspec
--   luarocks --lua-version 5.4 make --deps-mode=none --tree=/tmp/rocks bgwf-0.1.0-1.rockspec
--
-- (LuaRocks 3.8, in Debian 12, accepts only a rockspec file named
-- NAME-VERSION-REVISION.rockspec.)
rockspec_format = "3.0"
package = "bgwf"
version = "0.1.0-1"

source = {
  -- NOTE: `luarocks make` builds the working copy and never fetches this.
  url = "git+file:///work/main",
}

description = {
  summary = "Background workflow engine: submit and inspect workflows from Lua",
  detailed = [[
The bgwf module opens a bgwf store, submits workflows (by name or as a
builder function) and reads the status of executions and steps. It shares
its C implementation with the bgwf command. The helper modules
bgwf.preconditions, bgwf.builder and bgwf.json are compiled in.
]],
  license = "MIT",
}

dependencies = {
  "lua >= 5.4, < 5.5",
}

external_dependencies = {
  SQLITE = { header = "sqlite3.h" },
}

build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    BGWF_LUA_LIBDIR = "$(LIBDIR)",
  },
}
