-- The first and last LLM call in the window: the span the spend chart covers.
SELECT min(Timestamp) AS First, max(Timestamp) AS Last, count() AS Calls
FROM runmeter_calls
WHERE {{include:_llm_calls_in_window}}
