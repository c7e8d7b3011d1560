-- The first and last LLM call in the window: the span the spend chart covers.
SELECT min(Timestamp) AS First, max(Timestamp) AS Last, count() AS Calls
FROM runmeter_calls
WHERE Kind = 'llm' AND Duplicate = 0
  AND Timestamp >= {since:DateTime64(9)} AND Timestamp < {until:DateTime64(9)}
  AND ({owner:String} = '' OR Owner = {owner:String})
  AND ({project:String} = '' OR Project = {project:String})
  AND ({model:String} = '' OR Model = {model:String})
