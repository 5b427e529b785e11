-- Headless end-to-end run of the plugin against the real server, driven by tests/test_editor_nvim.py:
--   nvim --headless --clean -u editors/nvim/test/e2e.lua
-- The job (a JSON file named by $DIFFILL_E2E_JOB) gives the file, the line to type at, the text to
-- type and the server command. Keys are typed through the typeahead like a user's; the script polls
-- with timers and writes what it saw to job.result, then quits.
local job = vim.json.decode(table.concat(vim.fn.readfile(vim.env.DIFFILL_E2E_JOB), '\n'))
local plugin = vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h:h')
vim.opt.runtimepath:prepend(plugin)
vim.opt.swapfile = false
vim.cmd('filetype plugin indent on')
if job.ui then
  -- Shown in a terminal for the screenshot: colours, line numbers and the server's status.
  vim.cmd('syntax on')
  vim.o.number = true
  vim.o.laststatus = 2
  vim.o.statusline = " %t %m%= %{v:lua.require'diffill'.status()} "
end
vim.opt.shortmess:append('I')

local api = vim.api
local result = { ok = false, steps = {}, version = tostring(vim.version()) }
local started = vim.uv.hrtime()

local function step(name)
  result.steps[#result.steps + 1] = ('%.1fs %s'):format((vim.uv.hrtime() - started) / 1e9, name)
end

local function finish(err)
  result.error = err
  result.ok = err == nil
  result.status = require('diffill').status()
  vim.fn.writefile({ vim.json.encode(result) }, job.result)
  vim.cmd('qa!')
end

--- Calls `check` every 50 ms until it returns a value, then `next(value)`; fails after `timeout` ms.
local function wait_for(what, check, timeout, next)
  local deadline = vim.uv.now() + timeout
  local function poll()
    local ok, value = pcall(check)
    if not ok then
      return finish(('%s: %s'):format(what, value))
    end
    if value then
      step(what)
      return next(value)
    end
    if vim.uv.now() > deadline then
      return finish(('timed out waiting for %s'):format(what))
    end
    vim.defer_fn(poll, 50)
  end
  poll()
end

--- Types `text` one character at a time, `delay` ms apart, as keys a user presses.
local function type_text(text, delay, next)
  local chars = vim.fn.split(text, '\\zs')
  local i = 0
  local function one()
    i = i + 1
    if i > #chars then
      return vim.defer_fn(next, delay)
    end
    api.nvim_feedkeys(chars[i], 'nt', false)
    vim.defer_fn(one, delay)
  end
  one()
end

--- The ghost text drawn after the cursor: its first line and the virtual lines below.
local function ghost_shown()
  local namespaces = api.nvim_get_namespaces()
  local ns = namespaces['nvim.lsp.inline_completion'] or namespaces['diffill.ghost']
  if not ns then
    return nil
  end
  for _, mark in ipairs(api.nvim_buf_get_extmarks(0, ns, 0, -1, { details = true })) do
    local details = mark[4]
    local lines = {}
    local first = {}
    for _, chunk in ipairs(details.virt_text or {}) do
      first[#first + 1] = chunk[1]
    end
    lines[1] = table.concat(first)
    for _, vline in ipairs(details.virt_lines or {}) do
      local parts = {}
      for _, chunk in ipairs(vline) do
        parts[#parts + 1] = chunk[1]
      end
      lines[#lines + 1] = table.concat(parts)
    end
    local text = table.concat(lines, '\n')
    if text ~= '' then
      return text
    end
  end
  return nil
end

local function current_line()
  return api.nvim_get_current_line()
end

require('diffill').setup({ cmd = job.cmd, settings = job.settings or {}, accept_key = job.accept_key or '<Tab>' })
result.native = require('diffill').has_native_inline()

local function run()
vim.cmd.edit(vim.fn.fnameescape(job.file))
local timeout = job.timeout_ms or 120000
wait_for('server attached', function()
  return #require('diffill').clients(0) > 0
end, 30000, function()
  api.nvim_win_set_cursor(0, { job.line, 0 })
  vim.cmd('startinsert!')
  vim.defer_fn(function()
    type_text(job.type, 60, function()
      step('typed')
      wait_for('ghost text', ghost_shown, timeout, function(ghost)
        result.ghost = ghost
        result.line_before_accept = current_line()
        -- Type the first character of the suggestion: the rest stays on screen.
        local first = vim.fn.strcharpart(ghost, 0, 1)
        result.typed_through = first
        api.nvim_feedkeys(first, 'nt', false)
        vim.defer_fn(function()
          if job.pause_ms then
            -- Tell the test to take its screenshot now, then give it the time.
            vim.cmd('redraw')
            vim.fn.writefile({ 'ghost' }, job.result .. '.ghost')
          end
          result.ghost_after_typing = ghost_shown()
          result.line_after_typing = current_line()
          vim.defer_fn(function()
            -- Accept with the key, as typed (the mapping must run).
            api.nvim_feedkeys(api.nvim_replace_termcodes(job.accept_key or '<Tab>', true, false, true), 'mt', false)
            wait_for('accepted', function()
              return ghost_shown() == nil and current_line() ~= result.line_after_typing
            end, 10000, function()
              result.line_after_accept = current_line()
              result.cursor_after_accept = api.nvim_win_get_cursor(0)
              vim.cmd('stopinsert')
              vim.cmd.write()
              step('saved')
              finish(nil)
            end)
          end, job.pause_ms or 0)
        end, 20)
      end)
    end)
  end, 50)
end)
end

-- After startup, when filetype detection is on (the init file runs before it).
api.nvim_create_autocmd('VimEnter', { once = true, nested = true, callback = run })
