-- (shared) The LLM calls of the window and the filters, each counted once: a WHERE condition.
Kind = 'llm' AND Duplicate = 0
  AND Timestamp >= {since:DateTime64(9)} AND Timestamp < {until:DateTime64(9)}
  AND ({owner:String} = '' OR Owner = {owner:String})
  AND ({project:String} = '' OR Project = {project:String})
  AND ({model:String} = '' OR Model = {model:String})
