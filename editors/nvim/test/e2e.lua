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

local function cursor_col()
  return api.nvim_win_get_cursor(0)[2]
end

--- The last suggestion the server sent, as raw text: what it inserts after the cursor of that
--- moment. The drawn ghost text shows control characters in caret notation, so the test compares
--- against strtrans() of this. (The typed text is ASCII, so LSP characters are bytes here.)
local last_suggestion = nil

local function record_responses(client)
  local request = client.request
  client.request = function(self, method, params, handler, ...)
    if method == 'textDocument/inlineCompletion' and handler then
      local inner = handler
      handler = function(err, res, ctx, ...)
        local first = res and (res.items or res)[1]
        if first and type(first.insertText) == 'string' then
          local start = first.range and first.range.start.character or cursor_col()
          local typed = current_line():sub(start + 1, cursor_col())
          if first.insertText:sub(1, #typed) == typed then
            last_suggestion = first.insertText:sub(#typed + 1)
          end
        end
        return inner(err, res, ctx, ...)
      end
    end
    return request(self, method, params, handler, ...)
  end
end

--- Types one character as a user would; a control character or Tab literally, after CTRL-V.
local function type_char(char)
  local literal = char:byte() < 32 and char ~= '\n'
  api.nvim_feedkeys((literal and '\22' or '') .. char, 'nt', false)
end

require('diffill').setup({ cmd = job.cmd, settings = job.settings or {}, accept_key = job.accept_key or '<Tab>' })
result.native = require('diffill').has_native_inline()

local timeout = job.timeout_ms or 120000

local function accept()
  -- The accept key goes through the typeahead with mappings on, as when pressed.
  api.nvim_feedkeys(api.nvim_replace_termcodes(job.accept_key or '<Tab>', true, false, true), 'mt', false)
  wait_for('accepted', function()
    return ghost_shown() == nil and current_line() ~= result.line_after_typing
  end, 10000, function()
    result.line_after_accept = current_line()
    vim.cmd('stopinsert')
    vim.cmd.write()
    step('saved')
    -- What :checkhealth says while the server runs.
    vim.cmd('checkhealth diffill')
    result.health = table.concat(api.nvim_buf_get_lines(0, 0, -1, false), '\n')
    finish(nil)
  end)
end

local function type_through(ghost)
  result.ghost = ghost
  result.suggestion = last_suggestion
  result.suggestion_drawn = last_suggestion and vim.fn.strtrans(last_suggestion)
  result.line_before_accept = current_line()
  -- Type the suggestion's first character (unless it starts a new line): the rest stays on screen.
  local first = last_suggestion and vim.fn.strcharpart(last_suggestion, 0, 1) or ''
  result.typed_through = first ~= '\n' and first or ''
  if result.typed_through ~= '' then
    type_char(first)
  end
  vim.defer_fn(function()
    result.ghost_after_typing = ghost_shown()
    result.rest_drawn = last_suggestion and vim.fn.strtrans(last_suggestion:sub(#result.typed_through + 1))
    result.line_after_typing = current_line()
    result.line_after_typing_drawn = vim.fn.strtrans(current_line())
    if job.pause_ms then
      -- Tell the test to take its screenshot now, then give it the time.
      vim.cmd('redraw')
      vim.fn.writefile({ 'ghost' }, job.result .. '.ghost')
    end
    vim.defer_fn(accept, job.pause_ms or 0)
  end, 30)
end

local function run()
  vim.cmd.edit(vim.fn.fnameescape(job.file))
  wait_for('server attached', function()
    return require('diffill').clients(0)[1]
  end, 30000, function(client)
    record_responses(client)
    api.nvim_win_set_cursor(0, { job.line, 0 })
    vim.cmd('startinsert!')
    vim.defer_fn(function()
      type_text(job.type, 60, function()
        step('typed')
        wait_for('ghost text', ghost_shown, timeout, type_through)
      end)
    end, 50)
  end)
end

-- After startup, when filetype detection is on (the init file runs before it).
api.nvim_create_autocmd('VimEnter', { once = true, nested = true, callback = run })
