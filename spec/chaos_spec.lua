-- A small run of chaos/run: 300 steps on three executors, one of which is
-- killed with SIGKILL every 1-2 s. chaos/run checks that every execution
-- ends COMPLETE, that no step ran twice at once, that no COMPLETED step ran
-- again in a later attempt, that a killed executor's processes died with
-- it, and that the database passes PRAGMA integrity_check.

local helper = require("helper")

describe("chaos", function()
  it("survives executors killed every 1-2 s", function()
    if helper.postgresql_url then
      pending("chaos/run checks the store with the sqlite3 CLI and PRAGMA integrity_check, "
        .. "so it runs on SQLite only")
      return
    end
    local script = helper.repo .. "/chaos/run"
    local command = ("BGWF_BIN=%s timeout -k 10 150 %s --steps 300 --seconds 110"
      .. " --kill-interval 1-2 2>&1"):format(helper.quote(helper.bin), helper.quote(script))
    local pipe = io.popen(command)
    local output = pipe:read("a")
    local _, _, code = pipe:close()

    assert.are.equal(0, code, output)
    assert.is_truthy(output:find("chaos: PASSED", 1, true), output)
    local kills = tonumber(output:match("executor kills%s+(%d+)"))
    assert.is_number(kills, output)
    assert.is_true(kills >= 1, "no executor was killed:\n" .. output)
  end)
end)
