-- Headless end-to-end run of the plugin against the real server, driven by tests/test_editor_nvim.py:
--   nvim --headless --clean -u editors/nvim/test/e2e.lua
-- The job (a JSON file named by $DIFFILL_E2E_JOB) gives the file, the line to type at, the text to
-- type and the server command. Keys are typed through the typeahead like a user's; the script polls
-- with timers and writes what it saw to job.result, then quits.
local job = vim.json.decode(table.concat(vim.fn.readfile(vim.env.DIFFILL_E2E_JOB), '\n'))
local plugin = vim.fn.fnamemodify(debug.getinfo(1, 'S').source:sub(2), ':p:h:h')
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
local ghost_mark_text
local function ghost_shown()
  for name, ns in pairs(api.nvim_get_namespaces()) do
    if name:match('inline_completion') or name == 'diffill.ghost' then
      local text = nil
      for _, mark in ipairs(api.nvim_buf_get_extmarks(0, ns, 0, -1, { details = true })) do
        text = text or ghost_mark_text(mark)
      end
      if text then
        result.drawn_by = name
        return text
      end
    end
  end
  return nil
end

function ghost_mark_text(mark)
  do
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

--- The inline completion requests sent and answered: the last one's number and changedtick, and
--- the number and item count of the last answer.
local requests = { sent = 0, answered = 0 }

local function record_responses(client)
  local request = client.request
  client.request = function(self, method, params, handler, ...)
    if method == 'textDocument/inlineCompletion' and handler then
      local inner = handler
      requests.sent = requests.sent + 1
      local number, tick = requests.sent, api.nvim_buf_get_changedtick(0)
      requests.tick = tick
      handler = function(err, res, ctx, ...)
        if number == requests.sent then
          requests.answered = number
          requests.items = res and #(res.items or res) or 0
        end
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

if job.init then
  -- A user's init.lua (the plugin README's block): it puts the plugin on the runtimepath itself.
  dofile(job.init)
else
  vim.opt.runtimepath:prepend(plugin)
  require('diffill').setup({ cmd = job.cmd, settings = job.settings or {}, accept_key = job.accept_key or '<Tab>' })
end
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

-- ---- the scenarios of the issue-driven tests (job.scenario) ----------------------------------

local diffill = require('diffill')

--- The text drawn on screen row `row` (1-based), as the UI shows it.
local function screen_row(row)
  local cells = {}
  for col = 1, vim.o.columns do
    cells[#cells + 1] = vim.fn.screenstring(row, col)
  end
  return (table.concat(cells):gsub('%s+$', ''))
end

--- The screen row of the cursor's line.
local function cursor_screen_row()
  local pos = api.nvim_win_get_cursor(0)
  return vim.fn.screenpos(0, pos[1], pos[2] + 1).row
end

--- Records what is shown now and, with a UI, has the test capture the screen (it writes
--- <marker>.done when it has). `redraw = false`: nothing is redrawn on the driver's behalf.
local function shot(name, next, redraw, press_enter, action)
  if redraw ~= false then
    vim.cmd('redraw')
  end
  result.shots = result.shots or {}
  result.shots[name] = { line = current_line(), col = cursor_col(), ghost = ghost_shown() or vim.NIL, status = diffill.status(),
                         screen_line = job.ui and screen_row(cursor_screen_row()) or nil }
  if not job.ui then
    return next()
  end
  local marker = job.result .. '.shot.' .. name
  -- press_enter: the screen waits at a hit-enter prompt, which the test answers after its capture.
  vim.fn.writefile({ press_enter and 'enter' or name }, marker)
  if action then
    action() -- it may wait at a hit-enter prompt until the test, having captured it, presses Enter
  end
  wait_for('screenshot ' .. name, function()
    return vim.uv.fs_stat(marker .. '.done') ~= nil
  end, 60000, function()
    next()
  end)
end

local function open_and_attach(next)
  vim.cmd.edit(vim.fn.fnameescape(job.file))
  wait_for('server attached', function()
    return diffill.clients(0)[1]
  end, 30000, function(client)
    record_responses(client)
    next(client)
  end)
end

--- Presses keys through the typeahead with mappings on, as a user does; then waits `ms`.
local function press(keys, ms, next)
  api.nvim_feedkeys(api.nvim_replace_termcodes(keys, true, false, true), 'mt', false)
  vim.defer_fn(next, ms)
end

local function type_at_line(next)
  api.nvim_win_set_cursor(0, { job.line, job.col or 0 })
  vim.cmd(job.col and 'startinsert' or 'startinsert!')
  for _, command in ipairs(job.commands or {}) do
    vim.cmd(command)
  end
  vim.defer_fn(function()
    type_text(job.type, 60, function()
      step('typed')
      next()
    end)
  end, 50)
end

local scenarios = {}

--- The plugin README's setup: which server started, the first ghost text, Tab, and :Diffill log.
function scenarios.readme()
  open_and_attach(function(client)
    result.cmd = client.config.cmd
    type_at_line(function()
      wait_for('ghost text', ghost_shown, timeout, function(ghost)
        result.ghost = ghost
        result.suggestion = last_suggestion
        shot('ghost', function()
          press('<Tab>', 300, function()
            result.line_after_accept = current_line()
            vim.cmd('stopinsert')
            result.logs_opened = diffill.open_logs()
            finish(nil)
          end)
        end)
      end)
    end)
  end)
end

--- Typing in the middle of a line: the ghost text goes between the characters, then Tab.
function scenarios.midline()
  open_and_attach(function()
    type_at_line(function()
      wait_for('ghost text', ghost_shown, timeout, function(ghost)
        result.ghost = ghost
        result.suggestion = last_suggestion
        shot('midline', function()
          press('<Tab>', 300, function()
            result.line_after_accept = current_line()
            result.ghost_after_accept = ghost_shown() or vim.NIL
            finish(nil)
          end)
        end)
      end)
    end)
  end)
end

--- A keystroke the suggestion does not start with, then Tab before the next answer.
function scenarios.diverge()
  open_and_attach(function()
    type_at_line(function()
      wait_for('ghost text', ghost_shown, timeout, function(ghost)
        result.ghost = ghost
        result.suggestion = last_suggestion
        shot('ghost', function()
          type_char(job.diverge)
          vim.defer_fn(function()
            vim.cmd('redraw')
            result.line_after_diverge = current_line()
            result.ghost_after_diverge = ghost_shown() or vim.NIL
            result.screen_after_diverge = screen_row(cursor_screen_row())
            -- Within the plugin's debounce: no new answer has come.
            press('<Tab>', 40, function()
              result.line_after_tab = current_line()
              result.ghost_after_tab = ghost_shown() or vim.NIL
              shot('after_tab', function()
                finish(nil)
              end)
            end)
          end, 20)
        end)
      end)
    end)
  end)
end

--- The statusline as drawn, with nothing redrawn by the driver: when the model is ready, after a fill.
function scenarios.statusline()
  open_and_attach(function(client)
    result.statuses = {}
    api.nvim_create_autocmd('User', {
      pattern = 'DiffillStatus',
      callback = function(args)
        table.insert(result.statuses, args.data and args.data.state)
      end,
    })
    wait_for('ready status', function()
      local s = diffill.status_by_client[client.id]
      return s and s.state == 'ready'
    end, timeout, function()
      vim.defer_fn(function()
        shot('ready', function()
          type_at_line(function()
            wait_for('ghost text', ghost_shown, timeout, function(ghost)
              result.ghost = ghost
              wait_for('a latency', function()
                local s = diffill.status_by_client[client.id]
                return s and type(s.latency_ms) == 'number'
              end, timeout, function()
                vim.defer_fn(function()
                  shot('after_fill', function()
                    finish(nil)
                  end, false)
                end, 500)
              end)
            end)
          end)
        end, false)
      end, 500)
    end)
  end)
end

--- Insert mode entered before the client attaches, and no key typed.
function scenarios.insert_before_attach()
  vim.cmd.edit(vim.fn.fnameescape(job.file))
  api.nvim_win_set_cursor(0, { job.line, 0 })
  vim.cmd('startinsert!')
  result.clients_at_insert = #diffill.clients(0)
  wait_for('server attached', function()
    return diffill.clients(0)[1]
  end, 30000, function(client)
    record_responses(client)
    wait_for('ghost text', ghost_shown, timeout, function(ghost)
      result.ghost = ghost
      result.suggestion = last_suggestion
      result.mode = api.nvim_get_mode().mode
      shot('ghost', function()
        finish(nil)
      end)
    end)
  end)
end

--- A model path that does not exist: the messages, :Diffill status and :Diffill log.
function scenarios.wrong_model()
  open_and_attach(function(client)
    wait_for('error status', function()
      local s = diffill.status_by_client[client.id]
      return s and s.state == 'error'
    end, timeout, function()
      -- Time for any second message (the server also sends window/showMessage).
      vim.defer_fn(function()
        result.messages = vim.fn.execute('messages')
        result.mode = api.nvim_get_mode().mode
        shot('error', function()
          result.status_lines = diffill.status_lines()
          shot('status', function()
            vim.defer_fn(function()
              result.logs_opened = diffill.open_logs()
              local names = {}
              for _, win in ipairs(api.nvim_tabpage_list_wins(0)) do
                names[#names + 1] = api.nvim_buf_get_name(api.nvim_win_get_buf(win))
              end
              result.log_windows = names
              result.log_cursor_line = current_line()
              finish(nil)
            end, 200)
          end, false, true, function()
            vim.cmd('Diffill status')
          end)
        end, false)
      end, 2000)
    end)
  end)
end

--- The model's own answer (no fixed answers): once the last request since the typing is answered
--- and the status has the fill's latency, what is shown: ghost text, or the statusline saying none.
function scenarios.answer()
  result.statuses = {}
  api.nvim_create_autocmd('User', {
    pattern = 'DiffillStatus',
    callback = function(args)
      local data = args.data or {}
      table.insert(result.statuses, { state = data.state, message = data.message or vim.NIL,
                                      model = data.model or vim.NIL })
    end,
  })
  open_and_attach(function(client)
    type_at_line(function()
      local tick = api.nvim_buf_get_changedtick(0)
      wait_for('the answer after the typing', function()
        local s = diffill.status_by_client[client.id]
        return requests.tick == tick and requests.answered == requests.sent and requests.sent > 0
          and s and s.state == 'ready' and type(s.latency_ms) == 'number'
      end, timeout, function()
        -- The statusline redraw after the answer, then the same check again: nothing changed since.
        vim.defer_fn(function()
          result.items = requests.items
          result.requests = requests.sent
          result.changed_since = api.nvim_buf_get_changedtick(0) ~= tick or requests.answered ~= requests.sent
          result.ghost = ghost_shown() or vim.NIL
          result.suggestion = last_suggestion or vim.NIL
          result.model = (diffill.status_by_client[client.id] or {}).model or vim.NIL
          result.status_lines = diffill.status_lines()
          for _, mark in ipairs(api.nvim_buf_get_extmarks(0, -1, 0, -1, { details = true })) do
            if mark[4].virt_text then
              result.virt_text_pos = mark[4].virt_text_pos
            end
          end
          shot('answer', function()
            finish(nil)
          end)
        end, 1000)
      end)
    end)
  end)
end

--- The keys: accept a word, dismiss, ask again, accept a line.
function scenarios.keys()
  open_and_attach(function()
    type_at_line(function()
      wait_for('ghost text', ghost_shown, timeout, function(ghost)
        result.ghost = ghost
        local seen = {}
        result.keys = seen
        local function record(name)
          seen[#seen + 1] = { key = name, line = current_line(), ghost = ghost_shown() or vim.NIL }
        end
        press('<M-Right>', 200, function()
          record('accept word')
          press('<C-]>', 200, function()
            record('dismiss')
            press('<M-\\>', 10, function()
              wait_for('ghost text again', ghost_shown, timeout, function()
                record('trigger')
                press('<M-C-Right>', 200, function()
                  record('accept line')
                  shot('keys', function()
                    finish(nil)
                  end)
                end)
              end)
            end)
          end)
        end)
      end)
    end)
  end)
end

-- After startup, when filetype detection is on (the init file runs before it).
api.nvim_create_autocmd('VimEnter', { once = true, nested = true, callback = scenarios[job.scenario] or run })
